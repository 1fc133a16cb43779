"""A ``FileResponse`` on a server with the ``http.response.pathsend`` extension (Granian, NGINX
Unit) ends with a pathsend message, not a last body chunk: its after-response tasks run."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from fastapi.responses import FileResponse, StreamingResponse

from fastapi_tasks import Tasks, add_tasks, get_tasks

from .conftest import http_scope

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

    scope = http_scope(
        "GET", "/report", spec_version="2.4", extensions={"http.response.pathsend": {}}
    )
    async with LifespanManager(app):
        with anyio.fail_after(5):
            await app(scope, receive, send)
            await ran.wait()
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.pathsend"]


async def test_a_head_response_is_sent_with_its_head_even_if_the_stream_is_cut() -> None:
    """Granian reports ``http.disconnect`` after the first chunk of a streaming answer to a
    HEAD (it drops the body); Starlette then stops the stream. The client has the whole answer
    to a HEAD, so the request's after-response task runs."""
    ran = anyio.Event()
    chunks_sent = anyio.Event()
    app = FastAPI()
    add_tasks(app)

    async def log_probe() -> None:
        ran.set()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1000):
            yield b"chunk\n"
            await anyio.sleep(0)

    @app.head("/export")
    async def export(tasks: Tasks) -> StreamingResponse:
        tasks.after_response.schedule(log_probe)
        return StreamingResponse(chunks())

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await chunks_sent.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            chunks_sent.set()

    # Below ASGI 2.4, Starlette's StreamingResponse listens for disconnects (as under Granian).
    scope = http_scope("HEAD", "/export", spec_version="2.3")
    async with LifespanManager(app):
        with anyio.fail_after(5):
            await app(scope, receive, send)
            await ran.wait()
    assert sent[-1].get("more_body") is True  # the stream was cut before its last chunk
    assert get_tasks(app).stats().discarded == 0
