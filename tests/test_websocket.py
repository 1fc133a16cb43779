"""WebSocket endpoints: immediate tasks run at once; after-route and after-response tasks are
released when the session ends normally (return or client disconnect), discarded otherwise."""

from typing import Any

import pytest
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.testclient import TestClient

from fastapi_tasks import Tasks, add_tasks, get_tasks
from fastapi_tasks.testing import wait_for_tasks_sync


@pytest.fixture
def ws_app() -> tuple[FastAPI, list[str]]:
    app = FastAPI()
    add_tasks(app)
    events: list[str] = []

    async def record(tag: str) -> None:
        events.append(tag)

    @app.websocket("/ws")
    async def session(websocket: WebSocket, tasks: Tasks) -> None:
        await websocket.accept()
        tasks.after_response.schedule(record, "after response")
        tasks.after_route.schedule(record, "after route")
        await tasks.schedule(record, "immediate").wait()
        await websocket.send_text("immediate done")
        mode = await websocket.receive_text()
        if mode == "raise":
            raise RuntimeError("handler failed")
        if mode == "close":
            await websocket.close()
            return
        await websocket.receive_text()  # wait for the client to disconnect

    @app.websocket("/ws-app-scheduler")
    async def via_app(websocket: WebSocket) -> None:
        await websocket.accept()
        task = get_tasks(websocket).schedule(record, "from get_tasks(websocket)")
        await task.wait()
        await websocket.send_text(task.state.value)
        await websocket.close()

    return app, events


def test_immediate_tasks_run_during_the_session(ws_app: Any) -> None:
    app, events = ws_app
    with TestClient(app) as client:
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_text() == "immediate done"
            assert events == ["immediate"]
            ws.send_text("close")
        wait_for_tasks_sync(client)
    assert events == ["immediate", "after route", "after response"]


def test_deferred_tasks_run_when_the_client_disconnects(ws_app: Any) -> None:
    app, events = ws_app
    with TestClient(app) as client:
        # leaving the block disconnects: the endpoint ends with WebSocketDisconnect, which the
        # test client re-raises here
        with (
            pytest.raises(WebSocketDisconnect, match="1000"),
            client.websocket_connect("/ws") as ws,
        ):
            assert ws.receive_text() == "immediate done"
            ws.send_text("wait")
        wait_for_tasks_sync(client)
        stats = get_tasks(app).stats()
    assert events == ["immediate", "after route", "after response"]
    assert (stats.succeeded, stats.discarded) == (3, 0)


def test_deferred_tasks_are_discarded_when_the_endpoint_raises(ws_app: Any) -> None:
    app, events = ws_app
    with TestClient(app) as client:
        with (
            pytest.raises(RuntimeError, match="handler failed"),
            client.websocket_connect("/ws") as ws,
        ):
            assert ws.receive_text() == "immediate done"
            ws.send_text("raise")
            ws.receive_text()
        wait_for_tasks_sync(client)
        stats = get_tasks(app).stats()
    assert events == ["immediate"]
    assert stats.discarded == 2


def test_get_tasks_accepts_a_websocket(ws_app: Any) -> None:
    app, events = ws_app
    with TestClient(app) as client, client.websocket_connect("/ws-app-scheduler") as ws:
        assert ws.receive_text() == "succeeded"
    assert events == ["from get_tasks(websocket)"]


def test_deferred_tasks_are_discarded_when_a_handled_exception_ends_the_session() -> None:
    """An exception an exception handler turns into a close never leaves the app, yet the
    session failed: its queued tasks are discarded, not released."""
    app = FastAPI()
    add_tasks(app)
    ran: list[str] = []

    class Refused(Exception):
        pass

    async def record(tag: str) -> None:  # pragma: no cover - must not run
        ran.append(tag)

    @app.exception_handler(Refused)
    async def refused(websocket: WebSocket, exc: Refused) -> None:
        await websocket.close(code=4003)

    @app.websocket("/ws")
    async def session(websocket: WebSocket, tasks: Tasks) -> None:
        await websocket.accept()
        tasks.after_route.schedule(record, "after route")
        tasks.after_response.schedule(record, "after response")
        raise Refused

    with TestClient(app) as client:
        with (
            pytest.raises(WebSocketDisconnect, match=r"^$") as closed,
            client.websocket_connect("/ws") as ws,
        ):
            ws.receive_text()
        assert closed.value.code == 4003
        wait_for_tasks_sync(client)
        stats = get_tasks(app).stats()
    assert ran == []
    assert (stats.discarded, stats.scheduled) == (2, 0)
