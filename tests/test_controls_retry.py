"""Retries: Retry(...) policies, counters, on_error after the last attempt, shutdown."""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio
import pytest
from asgi_lifespan import LifespanManager

from fastapi_tasks import Retry, Task, TaskConfig, TaskState, get_tasks

from .conftest import serve

pytestmark = pytest.mark.anyio

NO_WAIT = Retry(attempts=3, backoff=0, jitter=False)


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


def test_backoff_grows_by_the_multiplier_up_to_the_maximum() -> None:
    policy = Retry(backoff=0.5, multiplier=3, max_backoff=10, jitter=False)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 10]
    assert policy.delay(10_000) == 10  # no overflow however many attempts


def test_jitter_draws_between_half_and_all_of_the_wait() -> None:
    policy = Retry(backoff=2, multiplier=2, max_backoff=math.inf)
    assert policy.delay(2, rand=0.0) == 2
    assert policy.delay(2, rand=0.999) == pytest.approx(3.998)
    assert all(2 <= policy.delay(2) <= 4 for _ in range(100))


def test_which_errors_are_retried() -> None:
    policy = Retry(attempts=2, on=Flaky)
    assert policy.on == (Flaky,)
    assert policy.should_retry(Flaky(), 1)
    assert not policy.should_retry(Flaky(), 2)  # the last attempt
    assert not policy.should_retry(Fatal(), 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"attempts": 0}, ValueError, "attempts must be >= 1"),
        ({"attempts": 2.0}, TypeError, "attempts must be an int"),
        ({"attempts": True}, TypeError, "attempts must be an int"),
        ({"backoff": -1}, ValueError, "backoff must be >= 0"),
        ({"backoff": "1"}, TypeError, "backoff must be a number"),
        ({"multiplier": 0.5}, ValueError, "multiplier must be >= 1"),
        ({"max_backoff": math.nan}, ValueError, "max_backoff must be >= 0"),
        ({"jitter": 1}, TypeError, "jitter must be a bool"),
        ({"on": ()}, TypeError, "on must be an Exception subclass"),
        ({"on": KeyboardInterrupt}, TypeError, "on must be an Exception subclass"),
        ({"on": (ValueError, "x")}, TypeError, "on must be an Exception subclass"),
    ],
)
def test_bad_policies_are_refused(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Retry(**kwargs)


def test_task_config_takes_only_a_retry_policy() -> None:
    with pytest.raises(TypeError, match=r"TaskConfig\.retry must be a fastapi_tasks\.Retry"):
        TaskConfig(retry=3)  # type: ignore[arg-type]
    assert TaskConfig(retry=NO_WAIT).merge(TaskConfig(name="x")).retry is NO_WAIT


async def test_a_flaky_task_succeeds_on_a_later_attempt(make_app: Any) -> None:
    app = make_app()
    errors: list[Exception] = []

    async def handler(task: Task[..., Any], error: Exception) -> None:
        errors.append(error)

    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Flaky(calls)
        return "ok"

    async with serve(app):
        task = get_tasks(app).task(retry=NO_WAIT, on_error=handler).schedule(flaky)
        await task.wait()
        assert (task.state, task.result(), task.attempts) == (TaskState.SUCCEEDED, "ok", 3)
        assert errors == []
        stats = get_tasks(app).stats()
        assert (stats.scheduled, stats.succeeded, stats.failed, stats.retried) == (1, 1, 0, 2)


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_on_error_runs_once_after_the_last_attempt(
    make_app: Any, kind: str, task_logs: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    errors: list[tuple[int, Exception]] = []

    def handler(task: Task[..., Any], error: Exception) -> None:
        errors.append((task.attempts, error))

    def always_sync(secret: str) -> None:
        raise Flaky("attempt failed")

    async def always_async(secret: str) -> None:
        raise Flaky("attempt failed")

    func: Any = always_async if kind == "async" else always_sync
    async with serve(app):
        task = get_tasks(app).task(retry=NO_WAIT, on_error=handler).schedule(func, "hunter2")
        await task.wait()
        assert task.state is TaskState.FAILED
        assert errors == [(3, task.error)]
        with pytest.raises(Flaky, match="attempt failed"):
            task.result()
        stats = get_tasks(app).stats()
        assert (stats.scheduled, stats.failed, stats.retried, stats.running) == (1, 1, 2, 0)
    retries = [r for r in task_logs.records if "retrying" in r.getMessage()]
    assert len(retries) == 2
    assert all(r.levelno == logging.WARNING for r in retries)
    assert "hunter2" not in task_logs.text  # argument values are never logged


async def test_errors_outside_the_policy_are_not_retried(make_app: Any) -> None:
    app = make_app()

    async def fatal() -> None:
        raise Fatal("no point retrying")

    async with serve(app):
        policy = Retry(attempts=5, backoff=0, on=(Flaky,))
        task = get_tasks(app).task(retry=policy).schedule(fatal)
        await task.wait()
        assert (task.state, task.attempts) == (TaskState.FAILED, 1)
        assert get_tasks(app).stats().retried == 0


async def test_the_wait_between_attempts_is_cancelled_at_shutdown_unless_shielded(
    make_app: Any,
) -> None:
    app = make_app()
    first_failed = {"plain": anyio.Event(), "shielded": anyio.Event()}
    calls = {"plain": 0, "shielded": 0}

    async def flaky(label: str) -> str:
        calls[label] += 1
        if calls[label] == 1:
            first_failed[label].set()
            raise Flaky(label)
        return label

    # a long backoff: only the shutdown can end the plain task's wait; the shielded task's
    # wait is short so the drain sees it retry and succeed
    long_wait = Retry(attempts=2, backoff=3600, jitter=False)
    short_wait = Retry(attempts=2, backoff=0.01, jitter=False)
    async with LifespanManager(app):
        tasks = get_tasks(app)
        plain = tasks.task(retry=long_wait).schedule(flaky, "plain")
        shielded = tasks.task(retry=short_wait, shield=True).schedule(flaky, "shielded")
        await first_failed["plain"].wait()
        await first_failed["shielded"].wait()
    assert plain.state is TaskState.CANCELLED
    assert plain.attempts == 1
    assert (shielded.state, shielded.attempts) == (TaskState.SUCCEEDED, 2)
    stats = get_tasks(app).stats()
    assert (stats.scheduled, stats.cancelled, stats.succeeded, stats.retried) == (2, 1, 1, 2)


async def test_cancel_stops_a_task_waiting_to_retry(make_app: Any) -> None:
    app = make_app()
    failed_once = anyio.Event()

    async def flaky() -> None:
        failed_once.set()
        raise Flaky("again")

    async with serve(app):
        task = get_tasks(app).task(retry=Retry(backoff=3600), shield=True).schedule(flaky)
        await failed_once.wait()
        await anyio.sleep(0)
        assert task.state is TaskState.RUNNING
        assert task.cancel() is True
        await task.wait()
        assert (task.state, task.attempts) == (TaskState.CANCELLED, 1)
        stats = get_tasks(app).stats()
        assert (stats.cancelled, stats.retried, stats.running) == (1, 1, 0)


async def test_each_attempt_is_reported_to_the_attempt_observer(make_app: Any) -> None:
    """The internal hook tracing builds on: one start and one end per attempt, in order."""
    app = make_app()
    seen: list[tuple[str, int, str]] = []

    class Recorder:
        def attempt_started(self, task: Task[..., Any], attempt: int) -> None:
            seen.append(("start", attempt, task.name))

        def attempt_finished(
            self, task: Task[..., Any], attempt: int, error: BaseException | None
        ) -> None:
            seen.append(("end", attempt, type(error).__name__))

    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Flaky()

    async with serve(app):
        from fastapi_tasks._lifespan import get_runtime

        get_runtime(app).controls.attempt_observer = Recorder()
        task = get_tasks(app).task(name="flaky", retry=NO_WAIT).schedule(flaky)
        await task.wait()
    assert seen == [
        ("start", 1, "flaky"),
        ("end", 1, "Flaky"),
        ("start", 2, "flaky"),
        ("end", 2, "NoneType"),
    ]
