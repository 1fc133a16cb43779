"""Behaviour a mutation run once showed untested: each test fails when its behaviour breaks."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, HTTPException

from fastapi_tasks import FastAPITasksShutdownError, Task, Tasks, TaskState, add_tasks, get_tasks
from fastapi_tasks._lifespan import get_runtime
from fastapi_tasks._shutdown import drain

from .conftest import lifespan_in_background, raises_unwrapped, serve

pytestmark = pytest.mark.anyio


async def test_shielded_tasks_scheduled_in_the_drains_loop_turn_complete(make_app: Any) -> None:
    app = make_app(thread_limit=1)
    done: list[str] = []

    async def shielded_async() -> None:
        done.append("async")

    def shielded_sync(tag: str) -> None:
        done.append(tag)

    async with serve(app):
        scheduler = get_tasks(app).task(shield=True)
        # no checkpoint between these calls and the start of the drain: nothing has started
        handles = [
            scheduler.schedule(shielded_async),
            scheduler.schedule(shielded_sync, "sync on the free thread"),
            scheduler.schedule(shielded_sync, "sync in the backlog"),
        ]
        with anyio.fail_after(5):
            await drain(get_runtime(app), timeout=None)
    assert [task.state for task in handles] == [TaskState.SUCCEEDED] * 3
    assert sorted(done) == ["async", "sync in the backlog", "sync on the free thread"]


async def test_unshielded_tasks_of_that_turn_are_cancelled_without_starting(make_app: Any) -> None:
    app = make_app(thread_limit=1)

    async def never() -> None:  # pragma: no cover - must not start
        raise AssertionError("started")

    async with serve(app):
        scheduler = get_tasks(app)
        handles = [scheduler.schedule(never), scheduler.schedule(print, "x")]
        with anyio.fail_after(5):
            await drain(get_runtime(app), timeout=None)
    async_task = handles[0]
    assert async_task.state is TaskState.CANCELLED
    assert not async_task.started.is_set()
    assert async_task.started_at is None


def schedule_from_a_plain_thread(app: FastAPI) -> list[BaseException]:
    """Call ``schedule()`` from a thread anyio knows nothing of; return what it raised."""
    errors: list[BaseException] = []

    def from_a_thread() -> None:
        try:
            get_tasks(app).schedule(print, "x")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=from_a_thread)
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    return errors


def test_scheduling_from_another_thread_after_the_loop_is_gone_is_a_clear_error() -> None:
    app = FastAPI()
    add_tasks(app)

    async def run_lifespan() -> None:
        async with LifespanManager(app):
            pass

    anyio.run(run_lifespan)
    errors = schedule_from_a_plain_thread(app)
    assert [type(exc) for exc in errors] == [FastAPITasksShutdownError]
    assert "no longer running" in str(errors[0])


async def test_scheduling_from_another_thread_after_stop_is_a_clear_error(make_app: Any) -> None:
    app = make_app()
    async with serve(app):
        pass
    errors = await anyio.to_thread.run_sync(schedule_from_a_plain_thread, app)
    assert [type(exc) for exc in errors] == [FastAPITasksShutdownError]
    assert "shutting down" in str(errors[0])
    assert get_tasks(app).stats().scheduled == 0


async def test_the_drain_summary_counts_exactly(
    make_app: Any, task_logs: pytest.LogCaptureFixture
) -> None:
    app = make_app(shutdown_timeout=0.2, thread_limit=2)
    release = threading.Event()
    entered = threading.Event()

    async def quick() -> None:
        pass

    async def until_draining() -> None:
        while get_tasks(app).stats().state != "draining":
            await anyio.sleep(0.001)

    def stuck() -> None:
        entered.set()
        release.wait(10)

    try:
        async with serve(app):
            scheduler = get_tasks(app)
            for _ in range(2):
                await scheduler.task(shield=True).schedule(quick).wait()  # before: not counted
            scheduler.task(shield=True).schedule(until_draining)  # completes in the drain
            sleepers = [scheduler.schedule(anyio.sleep_forever) for _ in range(3)]
            stuck_async = scheduler.task(name="stuck-async", shield=True).schedule(
                anyio.sleep_forever
            )
            scheduler.task(name="stuck-sync", shield=True).schedule(stuck)
            for task in [*sleepers, stuck_async]:
                await task.started.wait()
            await anyio.to_thread.run_sync(entered.wait, 5)
    finally:
        release.set()
    summary = [r.getMessage() for r in task_logs.records if "drained in" in r.getMessage()]
    assert len(summary) == 1
    assert summary[0].endswith(": 1 completed, 3 cancelled, 2 abandoned")
    stats = get_tasks(app).stats()
    assert (stats.succeeded, stats.cancelled, stats.abandoned) == (3, 5, 2)


async def test_tasks_of_a_failing_startup_are_abandoned() -> None:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        get_tasks(app).task(name="warm-cache").schedule(print, "never")
        raise RuntimeError("database unreachable")
        yield  # pragma: no cover

    app = FastAPI(lifespan=lifespan)
    add_tasks(app)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    keep = Keep()
    logging.getLogger("fastapi_tasks").addHandler(keep)
    try:
        with raises_unwrapped(RuntimeError, match="^database unreachable$"):
            async with serve(app):
                pass  # pragma: no cover
    finally:
        logging.getLogger("fastapi_tasks").removeHandler(keep)
    stats = get_tasks(app).stats()
    assert (stats.state, stats.scheduled, stats.cancelled, stats.abandoned, stats.pending) == (
        "stopped",
        1,
        1,
        1,
        0,
    )
    assert any("warm-cache" in line and "abandoned" in line for line in records)


def test_a_sync_task_finishing_after_its_loop_closed_never_blocks_its_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The thread of a task given up at the deadline reports its end without waiting on the
    loop: once the loop is closed it logs, and the thread (and the interpreter) can end."""
    caplog.set_level(logging.INFO, logger="fastapi_tasks")
    app = FastAPI()
    add_tasks(app, shutdown_timeout=0.05)
    entered = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    def stubborn() -> None:
        entered.set()
        release.wait(10)

    def watch_thread() -> None:
        entered.wait(5)
        for thread in threading.enumerate():
            if thread.name == "AnyIO worker thread" and thread is not threading.current_thread():
                workers.append(thread)
        finished.set()

    workers: list[threading.Thread] = []

    async def main() -> None:
        async with LifespanManager(app):
            get_tasks(app).task(name="stubborn", shield=True).schedule(stubborn)
            await anyio.to_thread.run_sync(entered.wait, 5)
        assert get_tasks(app).stats().abandoned == 1

    watcher = threading.Thread(target=watch_thread)
    watcher.start()
    anyio.run(main)
    watcher.join(5)
    release.set()  # the loop is closed now: the thread finishes and must not block
    for thread in workers:
        thread.join(5)
        assert not thread.is_alive()
    assert "stubborn finished in its thread after the event loop closed" in caplog.text


def report() -> None:
    pass


async def areport() -> None:
    pass


@pytest.mark.parametrize("func", [report, areport], ids=["sync", "async"])
@pytest.mark.parametrize("mode", ["after_route", "after_response"])
@pytest.mark.parametrize("refusal", ["endpoint raised", "shutdown before release"])
async def test_deferred_handles_refused_at_their_moment_end_cancelled(
    make_app: Any, mode: str, func: Any, refusal: str
) -> None:
    """A deferred task that never gets to start (its request failed, or the runtime stopped
    before its moment) ends ``cancelled``: ``wait()`` returns, it never stays pending."""
    app = make_app()
    handles: list[Task[..., Any]] = []
    scheduled = anyio.Event()
    may_return = anyio.Event()

    @app.get("/")
    async def endpoint(tasks: Tasks) -> None:
        handles.append(getattr(tasks, mode).schedule(func))
        scheduled.set()
        await may_return.wait()
        if refusal == "endpoint raised":
            raise HTTPException(status_code=409)

    async with lifespan_in_background(app) as life, anyio.create_task_group() as tg:
        transport = httpx.ASGITransport(life.app)
        client = httpx.AsyncClient(transport=transport, base_url="http://test")
        tg.start_soon(client.get, "/")
        await scheduled.wait()
        if refusal == "shutdown before release":
            life.shutdown()
            await life.ended.wait()  # deferred tasks do not hold the drain
        may_return.set()
        with anyio.fail_after(5):
            await handles[0].wait()
        await client.aclose()
    assert handles[0].state is TaskState.CANCELLED
    assert not handles[0].started.is_set()
    assert get_tasks(app).stats().discarded == 1
