"""add_tasks(): input validation, one call per app, and composing with the app's own lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from fastapi_tasks import (
    FastAPITasksAlreadyAddedError,
    FastAPITasksError,
    FastAPITasksUninitializedAppError,
    TaskConfig,
    Tasks,
    add_tasks,
    get_tasks,
)

from .conftest import serve

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (True, TypeError),
        (False, TypeError),
        (0, ValueError),
        (-1, ValueError),
        ("4", TypeError),
        (1.5, TypeError),
        (None, TypeError),
    ],
)
def test_thread_limit_is_validated(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="thread_limit"):
        add_tasks(FastAPI(), thread_limit=value)


@pytest.mark.parametrize(
    ("value", "error"), [(True, TypeError), (0, ValueError), (-5, ValueError), ("10", TypeError)]
)
def test_max_pending_is_validated(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_pending"):
        add_tasks(FastAPI(), max_pending=value)


@pytest.mark.parametrize(
    ("value", "error"),
    [(True, TypeError), (-0.1, ValueError), (float("nan"), ValueError), ("3", TypeError)],
)
def test_shutdown_timeout_is_validated(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="shutdown_timeout"):
        add_tasks(FastAPI(), shutdown_timeout=value)


def test_config_must_be_a_task_config() -> None:
    with pytest.raises(TypeError, match="TaskConfig"):
        add_tasks(FastAPI(), config={"shield": True})  # type: ignore[arg-type]


def test_app_must_be_fastapi() -> None:
    with pytest.raises(TypeError, match="FastAPI"):
        add_tasks(object())  # type: ignore[arg-type]


def test_valid_arguments_are_accepted() -> None:
    add_tasks(FastAPI(), thread_limit=1, max_pending=1, shutdown_timeout=0)
    add_tasks(FastAPI(), config=TaskConfig(shield=True), shutdown_timeout=2.5)


def test_calling_twice_raises() -> None:
    app = FastAPI()
    add_tasks(app)
    with pytest.raises(FastAPITasksAlreadyAddedError, match="already"):
        add_tasks(app)
    assert issubclass(FastAPITasksAlreadyAddedError, FastAPITasksError)


def test_calling_after_the_app_started_raises() -> None:
    app = FastAPI()
    with TestClient(app):
        pass
    with pytest.raises(RuntimeError, match="before the application starts"):
        add_tasks(app)


async def test_the_apps_own_lifespan_and_its_state_survive() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append("app startup")
        yield {"db": "pool"}
        events.append("app teardown")

    app = FastAPI(lifespan=lifespan)
    add_tasks(app)

    async def record() -> None:
        events.append("task ran")

    @app.get("/")
    async def endpoint(request: Request, tasks: Tasks) -> dict[str, str]:
        await tasks.schedule(record).wait()
        return {"db": request.state.db}

    async with serve(app) as client:
        assert (await client.get("/")).json() == {"db": "pool"}
    assert events == ["app startup", "task ran", "app teardown"]


async def test_shielded_work_drains_before_the_apps_teardown() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("pool opened")
        yield
        events.append("pool closed")

    app = FastAPI(lifespan=lifespan)
    add_tasks(app)

    async def uses_pool() -> None:
        import anyio

        while get_tasks(app).stats().state != "draining":  # still running when the drain begins
            await anyio.sleep(0.001)
        events.append(f"shielded task used the pool ({events[-1]!r} was the last event)")

    async with serve(app):
        get_tasks(app).task(shield=True).schedule(uses_pool)
    assert events == [
        "pool opened",
        "shielded task used the pool ('pool opened' was the last event)",
        "pool closed",
    ]


@pytest.mark.filterwarnings("ignore:The on_startup and on_shutdown:DeprecationWarning")
def test_on_startup_and_on_shutdown_handlers_still_run() -> None:
    events: list[str] = []
    app = FastAPI(
        on_startup=[lambda: events.append("startup")],
        on_shutdown=[lambda: events.append("shutdown")],
    )
    add_tasks(app)

    @app.get("/")
    def endpoint(tasks: Tasks) -> str:
        tasks.schedule(events.append, "task")
        return "ok"

    with TestClient(app) as client:
        assert client.get("/").text == '"ok"'
    assert events[0] == "startup"
    assert events[-1] == "shutdown"
    assert "task" in events


async def test_tasks_without_add_tasks_says_to_call_it() -> None:
    app = FastAPI()

    @app.get("/")
    async def endpoint(tasks: Tasks) -> None:
        pass

    async with serve(app) as client:
        with pytest.raises(FastAPITasksUninitializedAppError, match=r"add_tasks\(app\)"):
            await client.get("/")


def test_tasks_without_a_running_lifespan_says_so() -> None:
    app = FastAPI()
    add_tasks(app)

    @app.get("/")
    async def endpoint(tasks: Tasks) -> None:
        pass

    client = TestClient(app)  # not entered: the lifespan does not run
    with pytest.raises(FastAPITasksUninitializedAppError, match="lifespan is not running"):
        client.get("/")


def test_get_tasks_without_add_tasks() -> None:
    with pytest.raises(FastAPITasksUninitializedAppError, match="add_tasks"):
        get_tasks(FastAPI())


def test_scheduling_before_the_lifespan_started() -> None:
    app = FastAPI()
    add_tasks(app)
    with pytest.raises(FastAPITasksUninitializedAppError, match="lifespan"):
        get_tasks(app).schedule(print)


async def test_the_runtime_restarts_for_each_lifespan() -> None:
    app = FastAPI()
    add_tasks(app)
    ran: list[int] = []

    async def record(i: int) -> None:
        ran.append(i)

    for i in range(3):
        async with serve(app):
            await get_tasks(app).schedule(record, i).wait()
            assert get_tasks(app).stats().scheduled == 1
        assert get_tasks(app).stats().state == "stopped"
    assert ran == [0, 1, 2]


async def test_startup_code_can_schedule_and_its_tasks_wait_for_the_runtime() -> None:
    events: list[str] = []

    async def record(tag: str) -> None:
        events.append(tag)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = get_tasks(app).schedule(record, "scheduled at startup")
        stats = get_tasks(app).stats()
        assert (stats.state, stats.pending) == ("starting", 1)
        events.append("startup finished")
        yield
        assert task.done()

    app = FastAPI(lifespan=lifespan)
    add_tasks(app)
    async with serve(app):
        await get_tasks(app).schedule(record, "while serving").wait()
    assert events == ["startup finished", "scheduled at startup", "while serving"]
