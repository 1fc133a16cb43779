"""Timeouts: TaskConfig(timeout=...) and tasks.task(timeout=...), async and sync, at shutdown."""

from __future__ import annotations

import math
import threading
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest
from asgi_lifespan import LifespanManager

from fastapi_tasks import (
    FastAPITasksTimeoutError,
    Task,
    TaskConfig,
    Tasks,
    TaskState,
    get_tasks,
)

from .conftest import serve

pytestmark = pytest.mark.anyio

#: Deadlines short enough to keep the suite quick; the deadline IS what these tests exercise.
SHORT = 0.05


async def test_an_async_task_past_its_timeout_fails_with_the_timeout_error(make_app: Any) -> None:
    app = make_app()
    errors: list[Exception] = []
    cancelled = anyio.Event()

    async def handler(task: Task[..., Any], error: Exception) -> None:
        errors.append(error)

    async def stuck() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async with serve(app):
        task = get_tasks(app).task(timeout=SHORT, on_error=handler).schedule(stuck)
        await task.wait()
        assert cancelled.is_set()
        assert task.state is TaskState.FAILED
        assert isinstance(task.error, FastAPITasksTimeoutError)
        assert errors == [task.error]
        with pytest.raises(FastAPITasksTimeoutError, match="still running after its timeout"):
            task.result()
        stats = get_tasks(app).stats()
        assert (stats.scheduled, stats.failed, stats.running, stats.retried) == (1, 1, 0, 0)


async def test_a_task_within_its_timeout_succeeds_with_its_result(make_app: Any) -> None:
    app = make_app(config=TaskConfig(timeout=30))

    async def quick(value: int) -> int:
        await anyio.sleep(0)
        return value * 2

    def quick_sync(value: int) -> int:
        return value + 1

    async with serve(app):
        tasks = get_tasks(app)
        first = tasks.schedule(quick, 21)
        second = tasks.schedule(quick_sync, 41)
        await first.wait()
        await second.wait()
        assert (first.result(), second.result()) == (42, 42)
        assert (first.attempts, second.attempts) == (1, 1)
        assert get_tasks(app).stats().succeeded == 2


async def test_a_sync_task_past_its_timeout_fails_and_its_thread_sees_the_cancellation(
    make_app: Any,
) -> None:
    app = make_app(thread_limit=1)
    saw_cancel = threading.Event()

    def stubborn() -> None:
        while True:  # cooperates: ends once it is told it was given up on
            try:
                anyio.from_thread.check_cancelled()
            except BaseException:
                saw_cancel.set()
                raise
            threading.Event().wait(0.005)

    def follow_up() -> str:
        return "ran"

    async with serve(app):
        tasks = get_tasks(app)
        task = tasks.task(timeout=SHORT).schedule(stubborn)
        await task.wait()
        assert task.state is TaskState.FAILED
        assert isinstance(task.error, FastAPITasksTimeoutError)
        assert await anyio.to_thread.run_sync(saw_cancel.wait, 5)
        # its thread token was given back at the deadline: the only thread is free again
        after = tasks.schedule(follow_up)
        await after.wait()
        assert after.result() == "ran"
        stats = tasks.stats()
        assert (stats.failed, stats.succeeded, stats.running) == (1, 1, 0)


async def test_a_global_timeout_is_lifted_with_inf(make_app: Any) -> None:
    app = make_app(config=TaskConfig(timeout=SHORT))
    release = anyio.Event()

    async def slow() -> str:
        await release.wait()
        return "done"

    async with serve(app):
        tasks = get_tasks(app)
        unbounded = tasks.task(timeout=math.inf).schedule(slow)
        bounded = tasks.schedule(slow)
        await bounded.wait()
        assert isinstance(bounded.error, FastAPITasksTimeoutError)
        assert not unbounded.done()
        release.set()
        await unbounded.wait()
        assert unbounded.result() == "done"


async def test_shutdown_cancels_an_unshielded_task_and_a_shielded_one_still_times_out(
    make_app: Any,
) -> None:
    app = make_app()
    started = anyio.Event()

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    async with LifespanManager(app):
        tasks = get_tasks(app)
        plain = tasks.task(timeout=60).schedule(forever)
        shielded = tasks.task(timeout=SHORT, shield=True).schedule(forever)
        await started.wait()
    assert plain.state is TaskState.CANCELLED
    assert shielded.state is TaskState.FAILED  # the drain waited for it to time out
    assert isinstance(shielded.error, FastAPITasksTimeoutError)
    stats = get_tasks(app).stats()
    assert (stats.cancelled, stats.failed, stats.abandoned) == (1, 1, 0)


async def test_a_timed_out_task_is_retried_when_the_policy_covers_it(make_app: Any) -> None:
    from fastapi_tasks import Retry

    app = make_app()
    calls: list[int] = []

    async def slow_then_quick() -> str:
        calls.append(len(calls))
        if len(calls) == 1:
            await anyio.sleep_forever()
        return "second time"

    async with serve(app):
        retry = Retry(attempts=2, backoff=0, jitter=False)
        task = get_tasks(app).task(timeout=SHORT, retry=retry).schedule(slow_then_quick)
        await task.wait()
        assert (task.result(), task.attempts) == ("second time", 2)
        assert get_tasks(app).stats().retried == 1


@pytest.mark.parametrize(
    ("timeout", "error", "match"),
    [
        (-1, ValueError, "timeout must be > 0"),
        (0, ValueError, "timeout must be > 0"),
        (math.nan, ValueError, "timeout must be > 0"),
        ("5", TypeError, "timeout must be a number"),
        (True, TypeError, "timeout must be a number"),
    ],
)
async def test_bad_timeouts_are_refused_at_the_call(
    make_app: Any, timeout: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        TaskConfig(timeout=timeout)
    app = make_app()
    async with serve(app):
        with pytest.raises(error, match=match):
            get_tasks(app).task(timeout=timeout)


async def test_controlled_sync_tasks_wait_for_a_thread_as_pending(make_app: Any) -> None:
    app = make_app(thread_limit=1)
    release = threading.Event()
    started = threading.Event()

    def job(n: int) -> int:
        started.set()
        release.wait(10)
        return n

    async with serve(app):
        tasks = get_tasks(app).task(timeout=60)
        first = tasks.schedule(job, 1)
        assert await anyio.to_thread.run_sync(started.wait, 5)
        second = tasks.schedule(job, 2)
        for _ in range(5):
            await anyio.sleep(0)
        assert second.state is TaskState.PENDING
        stats = get_tasks(app).stats()
        assert (stats.running, stats.pending, stats.waiting) == (1, 1, 1)
        release.set()
        await first.wait()
        await second.wait()
        assert (first.result(), second.result()) == (1, 2)
        assert get_tasks(app).stats().waiting == 0


async def test_an_error_raised_while_being_timed_out_is_a_timeout(make_app: Any) -> None:
    app = make_app()

    async def converts_cancellation() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            raise LookupError("raised during cleanup")

    async with serve(app):
        task = get_tasks(app).task(timeout=SHORT).schedule(converts_cancellation)
        await task.wait()
        assert isinstance(task.error, FastAPITasksTimeoutError)
        assert isinstance(task.error.__cause__, LookupError)


async def test_a_controlled_def_returning_a_coroutine_fails_with_a_hint(make_app: Any) -> None:
    app = make_app()

    async def coroutine_function() -> None:
        pass

    def returns_coroutine() -> Any:
        return coroutine_function()

    async with serve(app):
        task = get_tasks(app).task(timeout=60).schedule(returns_coroutine)
        await task.wait()
        assert isinstance(task.error, TypeError)
        assert "declare it 'async def'" in str(task.error)


async def test_a_def_endpoint_schedules_controlled_tasks(make_app: Any) -> None:
    app = make_app()
    handles: list[Task[..., Any]] = []

    async def job(n: int) -> int:
        return n

    @app.post("/")
    def endpoint(tasks: Tasks) -> None:  # runs in a worker thread
        handles.append(tasks.task(timeout=60, limit=1).schedule(job, 7))

    async with serve(app) as client:
        assert (await client.post("/")).status_code == 200
        await handles[0].wait()
        assert handles[0].result() == 7
