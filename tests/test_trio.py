"""The runtime only uses anyio's public API, so it also runs on trio."""

import threading
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from fastapi_tasks import Tasks, TaskState, get_tasks
from fastapi_tasks.testing import wait_for_tasks

from .conftest import serve

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


async def test_timing_modes_and_threads_on_trio(make_app: Any) -> None:
    app = make_app()
    events: list[str] = []

    async def record(tag: str) -> None:
        await anyio.lowlevel.checkpoint()
        events.append(tag)

    @app.get("/")
    async def endpoint(tasks: Tasks) -> str:
        tasks.after_response.schedule(record, "after response")
        tasks.after_route.schedule(record, "after route")
        tasks.schedule(events.append, "sync now")
        for i in range(5):
            tasks.schedule(record, f"now {i}")
        return "ok"

    async with serve(app) as client:
        assert (await client.get("/")).json() == "ok"
        await wait_for_tasks(app)
    assert sorted(events) == sorted(
        ["after response", "after route", "sync now"] + [f"now {i}" for i in range(5)]
    )


async def test_shutdown_on_trio(make_app: Any) -> None:
    app = make_app()
    done: list[str] = []
    draining = threading.Event()

    async def shielded() -> None:
        while get_tasks(app).stats().state != "draining":  # still running when the drain begins
            await anyio.sleep(0.001)
        draining.set()
        done.append("async")

    def shielded_sync() -> None:
        draining.wait(5)  # still running when the drain begins
        done.append("sync")

    async with serve(app):
        scheduler = get_tasks(app)
        forever = scheduler.schedule(anyio.sleep_forever)
        handles = [
            scheduler.task(shield=True).schedule(shielded),
            scheduler.task(shield=True).schedule(shielded_sync),
        ]
        await forever.started.wait()
        for task in handles:
            await task.started.wait()
    assert sorted(done) == ["async", "sync"]
    assert [task.state for task in handles] == [TaskState.SUCCEEDED] * 2
    assert forever.state is TaskState.CANCELLED
