"""docs/streaming.md: when deferred tasks run around a StreamingResponse."""

import logging

import anyio
import anyio.lowlevel
import pytest

from fastapi_tasks import get_tasks
from fastapi_tasks.testing import wait_for_tasks


@pytest.mark.anyio
async def test_streaming_timing(load_example, serve) -> None:
    example = load_example("docs_src.streaming.export")
    async with serve(example.app) as client:
        response = await client.get("/exports/sales.csv", params={"rows": 2})
        assert response.text.splitlines() == [
            "# export started: True",
            "0,row 0",
            "1,row 1",
            "# download logged yet: False",
        ]
        await wait_for_tasks(example.app)
    assert example.downloads == ["sales: export started", "sales: 2 rows downloaded"]


@pytest.mark.anyio
async def test_client_disconnect_discards_after_response_tasks(load_example, serve, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="fastapi_tasks")
    example = load_example("docs_src.streaming.export")
    first_chunk_sent = anyio.Event()
    sent: list[dict] = []

    async def receive() -> dict:
        await first_chunk_sent.wait()
        return {"type": "http.disconnect"}  # the client goes away mid-download

    async def send(message: dict) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            first_chunk_sent.set()
        await anyio.lowlevel.checkpoint()  # a real server yields while it writes

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/exports/big.csv",
        "raw_path": b"/exports/big.csv",
        "query_string": b"rows=100000",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 12345),
    }
    async with serve(example.app):
        with anyio.fail_after(5):
            await example.app(scope, receive, send)
        await wait_for_tasks(example.app)
        stats = get_tasks(example.app).stats()
    assert sent[-1].get("more_body", False) is True  # the last chunk never went out
    assert example.downloads == ["big: export started"]
    assert stats.discarded == 1
    assert "response was not completed" in caplog.text
