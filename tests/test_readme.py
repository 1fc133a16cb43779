"""The README's example is docs_src/readme/quickstart.py, verbatim, and it works."""

import shutil
import subprocess
import sys
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


def test_the_demo_script_installs_only_the_demo_extra_and_only_when_setup_changed(
    tmp_path: Path,
) -> None:
    """scripts/demo against a stand-in .venv/bin/python that logs what it is asked to do."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "demo", tmp_path / "scripts" / "demo")
    for name in ("setup.cfg", "setup.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "calls.log"
    fake = bin_dir / "python"
    fake.write_text(
        f'#!/bin/sh\nif [ "$1" = "-c" ]; then exec {sys.executable} "$@"; fi\necho "$*" >> {log}\n'
    )
    fake.chmod(0o755)

    def run_demo() -> list[str]:
        log.write_text("")
        subprocess.run(
            ["bash", str(tmp_path / "scripts" / "demo")], check=True, capture_output=True
        )
        return log.read_text().splitlines()

    first = run_demo()
    assert first[0] == "-m pip install --quiet -e .[demo]"
    assert first[1].startswith("-m uvicorn docs_src.demo_app:app ")
    assert run_demo() == first[1:]  # nothing changed: no install
    with (tmp_path / "setup.cfg").open("a") as file:
        file.write("\n# changed\n")
    assert run_demo()[0] == "-m pip install --quiet -e .[demo]"


def test_the_readme_promises_no_index_install_of_this_version() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "pip install fastapi-tasks\n" not in readme
    assert "add_tasks(app, *, config=None" in readme
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
