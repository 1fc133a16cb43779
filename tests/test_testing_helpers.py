"""fastapi_tasks.testing: waiting for tasks instead of sleeping, and capturing them."""

import anyio
import anyio.lowlevel
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fastapi_tasks import FastAPITasksError, FastAPITasksTimeoutError, Tasks, add_tasks, get_tasks
from fastapi_tasks.testing import capture_tasks, wait_for_tasks, wait_for_tasks_sync

from .conftest import serve

pytestmark = pytest.mark.anyio


def build_app() -> tuple[FastAPI, list[str]]:
    app = FastAPI()
    add_tasks(app)
    sent: list[str] = []

    async def send_email(to: str) -> None:
        for _ in range(10):  # several loop turns: only waiting for the task sees it done
            await anyio.lowlevel.checkpoint()
        sent.append(to)

    def write_audit(entry: str) -> None:
        sent.append(entry)

    @app.post("/signup")
    async def signup(email: str, tasks: Tasks) -> dict[str, str]:
        tasks.after_response.schedule(send_email, email)
        tasks.after_route.schedule(write_audit, f"audit {email}")
        tasks.schedule(write_audit, "now")
        return {"email": email}

    return app, sent


async def test_wait_for_tasks_with_httpx() -> None:
    app, sent = build_app()
    async with serve(app) as client:
        await client.post("/signup", params={"email": "a@example.com"})
        await wait_for_tasks(app)
        assert sorted(sent) == ["a@example.com", "audit a@example.com", "now"]


def test_wait_for_tasks_sync_with_testclient() -> None:
    app, sent = build_app()
    with TestClient(app) as client:
        client.post("/signup", params={"email": "b@example.com"})
        wait_for_tasks_sync(client)
        assert sorted(sent) == ["audit b@example.com", "b@example.com", "now"]


async def test_wait_for_tasks_times_out_with_the_names() -> None:
    app = FastAPI()
    add_tasks(app)
    async with serve(app):
        get_tasks(app).task(name="never-ends").schedule(anyio.sleep_forever)
        with pytest.raises(FastAPITasksTimeoutError, match="never-ends"):
            await wait_for_tasks(app, timeout=0.05)


def test_wait_for_tasks_sync_needs_a_running_client() -> None:
    app, _ = build_app()
    with pytest.raises(FastAPITasksError, match="with TestClient"):
        wait_for_tasks_sync(TestClient(app))


async def test_capture_tasks_records_without_running() -> None:
    app, sent = build_app()
    async with serve(app) as client:
        with capture_tasks(app) as captured:
            response = await client.post("/signup", params={"email": "c@example.com"})
        assert response.json() == {"email": "c@example.com"}
        assert sent == []
        assert [c.timing for c in captured] == ["after_response", "after_route", "now"]
        assert captured.names[0].endswith("send_email")
        assert captured.with_timing("after_response")[0].task.args == ("c@example.com",)
        assert get_tasks(app).stats().scheduled == 0
        await captured.run()  # run them yourself when you want their effects
        assert sorted(sent) == ["audit c@example.com", "c@example.com", "now"]
        # capturing ended: tasks run normally again
        await client.post("/signup", params={"email": "d@example.com"})
        await wait_for_tasks(app)
        assert "d@example.com" in sent


def test_capture_tasks_with_testclient_and_sync_endpoints() -> None:
    app = FastAPI()
    add_tasks(app)

    ran: list[int] = []

    def notify(user: int) -> None:  # pragma: no cover - must not run while captured
        ran.append(user)  # an exception here would be swallowed by the task: record instead

    @app.post("/")
    def endpoint(tasks: Tasks) -> None:
        tasks.schedule(notify, 1)

    with TestClient(app) as client:
        with capture_tasks(app) as captured:
            client.post("/")
        wait_for_tasks_sync(client)
        assert get_tasks(app).stats().scheduled == 0
    assert [(c.func, c.task.args) for c in captured] == [(notify, (1,))]
    assert ran == []


async def test_helpers_need_add_tasks() -> None:
    from fastapi_tasks import FastAPITasksUninitializedAppError

    with pytest.raises(FastAPITasksUninitializedAppError, match="add_tasks"):
        await wait_for_tasks(FastAPI())
    with (
        pytest.raises(FastAPITasksUninitializedAppError, match="add_tasks"),
        capture_tasks(FastAPI()),
    ):
        pass  # pragma: no cover
