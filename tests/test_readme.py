"""The README's example is docs_src/readme/quickstart.py, verbatim, and it works."""

from pathlib import Path

import pytest

from docs_src.readme import quickstart
from fastapi_tasks.testing import wait_for_tasks

from .conftest import serve

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_shows_the_example_verbatim() -> None:
    example = (ROOT / "docs_src" / "readme" / "quickstart.py").read_text()
    assert f"```python\n{example}```" in (ROOT / "README.md").read_text()


def test_the_readme_set_up_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    for script in ("scripts/demo", "scripts/test"):
        assert f"./{script}" in readme
        assert (ROOT / script).stat().st_mode & 0o111


@pytest.mark.anyio
async def test_the_readme_example_runs() -> None:
    quickstart.sent.clear()
    async with serve(quickstart.app) as client:
        response = await client.post("/users", params={"email": "ada@example.com"})
        assert response.json() == {"email": "ada@example.com"}
        await wait_for_tasks(quickstart.app)
        health = (await client.get("/health")).json()
    assert sorted(quickstart.sent) == ["ada@example.com", "signup ada@example.com"]
    assert health["succeeded"] == 2
    assert health["state"] == "running"
