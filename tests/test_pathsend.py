"""A ``FileResponse`` on a server with the ``http.response.pathsend`` extension (Granian, NGINX
Unit) ends with a pathsend message, not a last body chunk: its after-response tasks run."""

from pathlib import Path
from typing import Any

import anyio
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from fastapi.responses import FileResponse

from fastapi_tasks import Tasks, add_tasks

pytestmark = pytest.mark.anyio


async def test_pathsend_releases_after_response_tasks(tmp_path: Path) -> None:
    served = tmp_path / "report.txt"
    served.write_text("the whole report\n")
    ran = anyio.Event()
    app = FastAPI()
    add_tasks(app)

    async def log_download() -> None:
        ran.set()

    @app.get("/report")
    async def report(tasks: Tasks) -> FileResponse:
        tasks.after_response.schedule(log_download)
        return FileResponse(served)

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/report",
        "raw_path": b"/report",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 12345),
        "extensions": {"http.response.pathsend": {}},
    }
    async with LifespanManager(app):
        with anyio.fail_after(5):
            await app(scope, receive, send)
            await ran.wait()
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.pathsend"]
