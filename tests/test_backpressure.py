"""max_pending: schedule() refuses work once that many tasks wait to start."""

import threading
from typing import Any

import anyio
import pytest

from fastapi_tasks import FastAPITasksError, FastAPITasksQueueFullError, Tasks, get_tasks
from fastapi_tasks.testing import wait_for_tasks

from .conftest import serve

pytestmark = pytest.mark.anyio


async def test_schedule_raises_when_max_pending_tasks_wait(make_app: Any) -> None:
    app = make_app(thread_limit=1, max_pending=3)
    gate = threading.Event()
    entered = threading.Event()

    def blocked() -> None:
        entered.set()
        gate.wait(10)

    async with serve(app):
        scheduler = get_tasks(app)
        try:
            scheduler.schedule(blocked)  # takes the only thread
            await anyio.to_thread.run_sync(entered.wait, 5)
            for _ in range(3):
                scheduler.schedule(blocked)  # wait for the thread: pending
            with pytest.raises(FastAPITasksQueueFullError, match="max_pending=3"):
                scheduler.schedule(blocked)
            stats = scheduler.stats()
            assert (stats.pending, stats.running, stats.rejected) == (3, 1, 1)
        finally:
            gate.set()
        await wait_for_tasks(app)
        scheduler.schedule(print, "room again")  # accepted once the queue drained
        await wait_for_tasks(app)
    assert issubclass(FastAPITasksQueueFullError, FastAPITasksError)
    assert get_tasks(app).stats().succeeded == 5


async def test_deferred_tasks_are_admitted_when_scheduled_not_refused_on_release(
    make_app: Any,
) -> None:
    """max_pending bounds the backlog at schedule(): deferred tasks accepted then are never
    dropped when their moment comes, even if the backlog has grown past the limit."""
    app = make_app(thread_limit=1, max_pending=2)
    gate = threading.Event()
    entered = threading.Event()

    def blocked() -> None:
        entered.set()
        gate.wait(10)

    @app.get("/")
    async def endpoint(tasks: Tasks) -> str:
        for _ in range(4):
            tasks.after_response.task(name="report").schedule(blocked)
        return "ok"

    async with serve(app) as client:
        try:
            get_tasks(app).schedule(blocked)
            await anyio.to_thread.run_sync(entered.wait, 5)
            assert (await client.get("/")).json() == "ok"
            stats = get_tasks(app).stats()
            assert (stats.waiting, stats.rejected, stats.deferred) == (4, 0, 0)
            with pytest.raises(FastAPITasksQueueFullError, match="max_pending=2"):
                get_tasks(app).schedule(blocked)  # a new call sees the backlog
        finally:
            gate.set()
        await wait_for_tasks(app)
        stats = get_tasks(app).stats()
        assert (stats.succeeded, stats.rejected, stats.waiting) == (5, 1, 0)
