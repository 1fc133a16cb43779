"""task.cancel(), task.result() and task.wait(timeout=...), on plain and controlled tasks."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest
from asgi_lifespan import LifespanManager

from fastapi_tasks import (
    FastAPITasksCancelledError,
    FastAPITasksError,
    FastAPITasksNotFinishedError,
    FastAPITasksTimeoutError,
    Task,
    Tasks,
    TaskState,
    get_tasks,
)

from .conftest import serve

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("controlled", [False, True], ids=["plain", "controlled"])
async def test_cancel_a_pending_task_it_never_starts(make_app: Any, controlled: bool) -> None:
    app = make_app()
    ran: list[str] = []

    async def job() -> None:
        ran.append("ran")

    async with serve(app):
        tasks = get_tasks(app)
        scheduler = tasks.task(timeout=60) if controlled else tasks
        task = scheduler.schedule(job)  # starts on a later loop turn: still pending here
        assert task.state is TaskState.PENDING
        assert task.cancel() is True
        assert task.state is TaskState.CANCELLED
        await task.wait()
        await anyio.sleep(0)
        assert ran == []
        with pytest.raises(FastAPITasksCancelledError, match="was cancelled"):
            task.result()
        assert task.cancel() is False
        stats = tasks.stats()
        assert (stats.scheduled, stats.cancelled, stats.pending, stats.running) == (1, 1, 0, 0)


@pytest.mark.parametrize("controlled", [False, True], ids=["plain", "controlled"])
async def test_cancel_a_running_async_task_even_a_shielded_one(
    make_app: Any, controlled: bool
) -> None:
    app = make_app()
    started = anyio.Event()
    cleaned_up: list[bool] = []

    async def job() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaned_up.append(True)

    async with serve(app):
        tasks = get_tasks(app)
        scheduler = tasks.task(shield=True, timeout=60 if controlled else None)
        task = scheduler.schedule(job)
        await started.wait()
        assert task.cancel() is True
        await task.wait()
        assert task.state is TaskState.CANCELLED
        assert cleaned_up == [True]
        assert tasks.stats().cancelled == 1


@pytest.mark.parametrize("controlled", [False, True], ids=["plain", "controlled"])
async def test_cancel_a_running_sync_task_marks_it_and_its_thread_finishes_alone(
    make_app: Any, controlled: bool
) -> None:
    app = make_app()
    started = threading.Event()
    told = threading.Event()
    finished = threading.Event()

    def job() -> str:
        started.set()
        try:
            while True:
                anyio.from_thread.check_cancelled()
                threading.Event().wait(0.005)
        except BaseException:
            told.set()
            raise
        finally:
            finished.set()

    async with serve(app):
        tasks = get_tasks(app)
        task = (tasks.task(timeout=60) if controlled else tasks).schedule(job)
        assert await anyio.to_thread.run_sync(started.wait, 5)
        assert task.cancel() is True
        assert task.state is TaskState.CANCELLED  # at once: a thread cannot be interrupted
        stats = tasks.stats()
        assert (stats.cancelled, stats.running) == (1, 0)
        assert await anyio.to_thread.run_sync(told.wait, 5)
        assert await anyio.to_thread.run_sync(finished.wait, 5)
        await anyio.sleep(0)
        stats = tasks.stats()
        assert (stats.cancelled, stats.succeeded, stats.failed) == (1, 0, 0)


async def test_cancel_a_sync_task_waiting_for_a_thread(make_app: Any) -> None:
    app = make_app(thread_limit=1)
    release = threading.Event()
    started = threading.Event()
    ran: list[str] = []

    def busy() -> None:
        started.set()
        release.wait(10)

    def queued() -> None:
        ran.append("queued")

    async with serve(app):
        tasks = get_tasks(app)
        first = tasks.schedule(busy)
        second = tasks.schedule(queued)
        assert await anyio.to_thread.run_sync(started.wait, 5)
        assert tasks.stats().waiting == 1
        assert second.cancel() is True
        stats = tasks.stats()
        assert (stats.waiting, stats.pending, stats.cancelled) == (0, 0, 1)
        release.set()
        await first.wait()
    assert ran == []


async def test_cancel_a_deferred_task_before_its_moment(make_app: Any) -> None:
    app = make_app()
    ran: list[str] = []
    handles: list[Task[..., Any]] = []

    async def job() -> None:
        ran.append("ran")

    @app.post("/")
    async def endpoint(tasks: Tasks) -> None:
        task = tasks.after_response.schedule(job)
        handles.append(task)
        assert task.cancel() is True

    async with serve(app) as client:
        assert (await client.post("/")).status_code == 200
        await handles[0].wait()
        await anyio.sleep(0)
        stats = get_tasks(app).stats()
    assert ran == []
    assert handles[0].state is TaskState.CANCELLED
    assert (stats.scheduled, stats.discarded, stats.deferred) == (0, 1, 0)


async def test_cancel_from_a_def_endpoint(make_app: Any) -> None:
    app = make_app()
    started = anyio.Event()
    handles: list[Task[..., Any]] = []

    async def job() -> None:
        started.set()
        await anyio.sleep_forever()

    @app.post("/cancel")
    def cancel_it() -> dict[str, bool]:
        return {"cancelled": handles[0].cancel()}

    async with serve(app) as client:
        handles.append(get_tasks(app).schedule(job))
        await started.wait()
        response = await client.post("/cancel")
        assert response.json() == {"cancelled": True}
        await handles[0].wait()
        assert handles[0].state is TaskState.CANCELLED
        assert (await client.post("/cancel")).json() == {"cancelled": False}


async def test_result_returns_the_value_or_raises(make_app: Any) -> None:
    app = make_app()
    release = anyio.Event()

    async def answer() -> int:
        await release.wait()
        return 42

    def sync_answer() -> str:
        return "sync"

    async def broken() -> None:
        raise LookupError("nope")

    async with serve(app):
        tasks = get_tasks(app)
        waiting = tasks.schedule(answer)
        with pytest.raises(FastAPITasksNotFinishedError, match="still pending"):
            waiting.result()
        assert waiting.attempts == 0
        sync = tasks.schedule(sync_answer)
        failing = tasks.schedule(broken)
        release.set()
        for task in (waiting, sync, failing):
            await task.wait()
        assert (waiting.result(), sync.result(), waiting.attempts) == (42, "sync", 1)
        with pytest.raises(LookupError, match="nope"):
            failing.result()
    assert issubclass(FastAPITasksNotFinishedError, FastAPITasksError)
    assert issubclass(FastAPITasksCancelledError, FastAPITasksError)


async def test_wait_with_a_timeout_raises_and_leaves_the_task_running(make_app: Any) -> None:
    app = make_app()
    release = anyio.Event()

    async def job() -> str:
        await release.wait()
        return "done"

    async with serve(app):
        task = get_tasks(app).schedule(job)
        with pytest.raises(FastAPITasksTimeoutError, match=r"after waiting 0\.01s"):
            await task.wait(timeout=0.01)
        assert task.state is TaskState.RUNNING
        release.set()
        await task.wait(timeout=5)
        assert task.result() == "done"
        await task.wait(timeout=0)  # finished: returns at once
        with pytest.raises(ValueError, match="timeout must be >= 0"):
            await task.wait(timeout=-1)
        with pytest.raises(TypeError, match="timeout must be a number"):
            await task.wait(timeout="1")  # type: ignore[arg-type]


def test_cancel_a_captured_task() -> None:
    from fastapi import FastAPI

    from fastapi_tasks import add_tasks
    from fastapi_tasks.testing import capture_tasks

    app = FastAPI()
    add_tasks(app)
    with capture_tasks(app) as captured:
        get_tasks(app).schedule(print, "never")
    assert captured[0].task.cancel() is True
    assert captured[0].task.state is TaskState.CANCELLED


# ---------------------------------------------------------------------------- shutdown
async def test_the_drain_waits_for_a_controlled_sync_task_as_for_a_plain_one(
    make_app: Any,
) -> None:
    app = make_app()
    started = threading.Event()
    finished: list[str] = []

    def job(label: str) -> None:
        started.set()
        try:
            while True:
                anyio.from_thread.check_cancelled()
                threading.Event().wait(0.005)
        finally:
            finished.append(label)

    async with LifespanManager(app):
        tasks = get_tasks(app)
        controlled = tasks.task(timeout=60).schedule(job, "controlled")
        assert await anyio.to_thread.run_sync(started.wait, 5)
        started.clear()
        plain = tasks.schedule(job, "plain")
        assert await anyio.to_thread.run_sync(started.wait, 5)
    # the lifespan ended after both threads returned: the drain waited for them
    assert sorted(finished) == ["controlled", "plain"]
    assert controlled.state is TaskState.CANCELLED
    assert plain.state is TaskState.CANCELLED
    stats = get_tasks(app).stats()
    assert (stats.cancelled, stats.abandoned, stats.running) == (2, 0, 0)


async def test_the_shutdown_deadline_gives_up_on_controlled_tasks(make_app: Any) -> None:
    app = make_app(shutdown_timeout=0.05, thread_limit=2)
    release = threading.Event()
    sync_started = threading.Event()
    async_started = anyio.Event()

    def stuck_sync() -> None:
        sync_started.set()
        release.wait(10)

    async def stuck_async() -> None:
        async_started.set()
        await anyio.sleep_forever()

    try:
        async with LifespanManager(app):
            shielded = get_tasks(app).task(shield=True, timeout=60, limit=5)
            in_thread = shielded.schedule(stuck_sync)
            on_loop = shielded.schedule(stuck_async)
            assert await anyio.to_thread.run_sync(sync_started.wait, 5)
            await async_started.wait()
    finally:
        release.set()
    assert in_thread.state is TaskState.CANCELLED
    assert on_loop.state is TaskState.CANCELLED
    stats = get_tasks(app).stats()
    assert (stats.cancelled, stats.abandoned, stats.running, stats.pending) == (2, 2, 0, 0)


async def test_async_limit_waiters_are_cancelled_at_shutdown(make_app: Any) -> None:
    app = make_app(async_limit=1)
    started = anyio.Event()

    async def job() -> None:
        started.set()
        await anyio.sleep_forever()

    async with LifespanManager(app):
        tasks = get_tasks(app)
        running = tasks.schedule(job)
        waiting = [tasks.schedule(job) for _ in range(3)]
        await started.wait()
        assert tasks.stats().waiting == 3
    assert running.state is TaskState.CANCELLED
    assert all(task.state is TaskState.CANCELLED and task.attempts == 0 for task in waiting)
    stats = get_tasks(app).stats()
    assert (stats.cancelled, stats.waiting, stats.pending, stats.running) == (4, 0, 0, 0)
