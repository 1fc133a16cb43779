"""Periodic tasks: ``get_tasks(app).every(interval, func, ...)``.

Ticks are counted with events and state polling; the intervals are small (10 ms) so that a few
ticks pass quickly, and no assertion depends on how long anything took."""

import datetime
import functools
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from fastapi import FastAPI

from fastapi_tasks import (
    FastAPITasksShutdownError,
    FastAPITasksUninitializedAppError,
    PeriodicTask,
    Task,
    Tasks,
    TaskState,
    add_tasks,
    get_tasks,
)

from .conftest import raises_unwrapped, serve

pytestmark = pytest.mark.anyio

TICK = 0.01


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.001)


class Counter:
    """Counts calls; ``reached(n)`` is an event set at the n-th call."""

    def __init__(self) -> None:
        self.calls = 0
        self._targets: dict[int, anyio.Event] = {}

    def hit(self) -> None:
        self.calls += 1
        event = self._targets.get(self.calls)
        if event is not None:
            event.set()

    async def reached(self, count: int) -> None:
        if self.calls >= count:
            return
        event = self._targets.setdefault(count, anyio.Event())
        with anyio.fail_after(10):
            await event.wait()


def check_invariant(app: FastAPI) -> None:
    s = get_tasks(app).stats()
    assert s.scheduled == s.pending + s.running + s.succeeded + s.failed + s.cancelled


async def test_an_async_function_runs_at_every_tick_as_a_counted_task(make_app: Any) -> None:
    app = make_app()
    counter = Counter()

    async def beat(label: str, *, step: int) -> None:
        assert (label, step) == ("hb", 2)
        counter.hit()

    async with serve(app):
        periodic = get_tasks(app).every(TICK, beat, "hb", step=2)
        assert isinstance(periodic, PeriodicTask)
        await counter.reached(3)
        assert periodic.active and periodic.runs >= 3
        assert periodic.name.endswith("beat")
        assert periodic.cancel() is True
        assert periodic.cancel() is False  # idempotent
        assert not periodic.active
        last = periodic.last
        assert last is not None
        await last.wait()
        stats = get_tasks(app).stats()
        assert stats.scheduled == periodic.runs
        assert stats.succeeded == periodic.runs
        check_invariant(app)


async def test_a_plain_function_runs_in_the_thread_pool(make_app: Any) -> None:
    app = make_app()
    threads: list[int] = []
    loop_thread = threading.get_ident()

    def beat() -> None:
        threads.append(threading.get_ident())

    async with serve(app):
        periodic = get_tasks(app).every(datetime.timedelta(milliseconds=10), beat, name="sync")
        assert periodic.interval == pytest.approx(0.01)
        await wait_until(lambda: get_tasks(app).stats().succeeded >= 2)
        periodic.cancel()
    assert len(threads) >= 2 and loop_thread not in threads


async def test_a_run_still_going_at_the_next_tick_makes_it_skipped(make_app: Any) -> None:
    app = make_app()
    release = anyio.Event()
    counter = Counter()

    async def slow() -> None:
        counter.hit()
        if counter.calls == 1:
            await release.wait()

    async with serve(app):
        periodic = get_tasks(app).every(TICK, slow)
        await counter.reached(1)
        await wait_until(lambda: get_tasks(app).stats().skipped >= 3)
        stats = get_tasks(app).stats()
        assert (stats.scheduled, stats.running) == (1, 1)  # no second run while one is going
        assert periodic.skipped == stats.skipped and periodic.runs == 1
        check_invariant(app)
        release.set()
        await counter.reached(3)  # the schedule resumes once the run ended
        periodic.cancel()


async def test_a_failing_run_goes_to_on_error_and_the_schedule_goes_on(
    make_app: Any, task_logs: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    errors: list[tuple[str, str]] = []
    counter = Counter()

    async def flaky(secret: str) -> None:
        raise ValueError("boom")

    async def on_error(task: Task[..., Any], error: Exception) -> None:
        errors.append((task.name, str(error)))
        counter.hit()

    async with serve(app):
        periodic = get_tasks(app).every(TICK, flaky, "s3cr3t", name="flaky", on_error=on_error)
        await counter.reached(3)
        assert periodic.active
        periodic.cancel()
        assert get_tasks(app).stats().failed >= 3
    assert errors[:3] == [("flaky", "boom")] * 3
    assert "s3cr3t" not in task_logs.text  # arguments are never logged


async def test_every_inherits_the_settings_of_task(make_app: Any) -> None:
    app = make_app()
    counter = Counter()

    async def beat() -> None:
        counter.hit()

    async with serve(app):
        periodic = get_tasks(app).task(name="named", shield=True).every(TICK, beat)
        await counter.reached(1)
        last = periodic.last
        assert last is not None
        assert (periodic.name, last.name, last.shielded) == ("named", "named", True)
        periodic.cancel()


async def test_startup_code_can_start_a_schedule_that_stops_at_shutdown() -> None:
    counter = Counter()
    handles: list[PeriodicTask] = []

    async def beat() -> None:
        counter.hit()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        handles.append(get_tasks(app).every(TICK, beat))
        yield

    app = FastAPI(lifespan=lifespan)
    add_tasks(app)
    async with serve(app):
        await counter.reached(3)
        assert handles[0].active
    assert not handles[0].active
    runs = handles[0].runs
    await anyio.sleep(5 * TICK)
    assert handles[0].runs == runs  # no tick after shutdown
    stats = get_tasks(app).stats()
    assert stats.rejected == 0  # the schedule stopped before admission closed
    check_invariant(app)


async def test_a_schedule_of_a_failing_startup_is_stopped() -> None:
    handles: list[PeriodicTask] = []

    ran = anyio.Event()

    async def beat() -> None:
        ran.set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        handles.append(get_tasks(app).every(3600, beat))
        await ran.wait()  # the schedule now sleeps until its next tick, an hour away
        raise RuntimeError("database unreachable")
        yield  # pragma: no cover

    app = FastAPI(lifespan=lifespan)
    add_tasks(app)
    with raises_unwrapped(RuntimeError, match="database unreachable"):
        async with serve(app):
            pass  # pragma: no cover
    assert not handles[0].active
    assert get_tasks(app).stats().state == "stopped"


async def test_endpoints_start_and_cancel_schedules(make_app: Any) -> None:
    app = make_app()
    counter = Counter()
    handles: dict[str, PeriodicTask] = {}

    async def beat() -> None:
        counter.hit()

    @app.post("/async")
    async def start_async(tasks: Tasks) -> dict[str, str]:
        handles["async"] = tasks.every(TICK, beat, name="from-async")
        return {"name": handles["async"].name}

    @app.post("/sync")
    def start_sync(tasks: Tasks) -> dict[str, str]:  # runs in a worker thread
        handles["sync"] = tasks.every(TICK, beat, name="from-sync")
        return {"name": handles["sync"].name}

    @app.delete("/{which}")
    def stop(which: str) -> dict[str, bool]:
        first = handles[which].cancel()  # from a worker thread
        return {"first": first, "second": handles[which].cancel()}

    async with serve(app) as client:
        assert (await client.post("/async")).json() == {"name": "from-async"}
        assert (await client.post("/sync")).json() == {"name": "from-sync"}
        await counter.reached(6)
        await wait_until(lambda: handles["sync"].runs >= 2 and handles["async"].runs >= 2)
        assert (await client.delete("/async")).json() == {"first": True, "second": False}
        assert (await client.delete("/sync")).json() == {"first": True, "second": False}
        assert not handles["async"].active and not handles["sync"].active


async def test_shutdown_cancels_the_run_in_flight_unless_shielded(make_app: Any) -> None:
    app = make_app()
    finished: list[str] = []
    started = {"plain": anyio.Event(), "shielded": anyio.Event()}

    async def long_run(label: str) -> None:
        started[label].set()
        if label == "shielded":
            await wait_until(lambda: get_tasks(app).stats().state == "draining")
        else:
            await anyio.sleep_forever()
        finished.append(label)

    async with serve(app):
        scheduler = get_tasks(app)
        plain = scheduler.every(3600, long_run, "plain")
        shielded = scheduler.every(3600, long_run, "shielded", shield=True)
        for event in started.values():
            await event.wait()
    assert finished == ["shielded"]
    assert plain.last is not None and plain.last.state is TaskState.CANCELLED
    assert shielded.last is not None and shielded.last.state is TaskState.SUCCEEDED
    assert not plain.active and not shielded.active
    assert plain.cancel() is False  # already stopped by the shutdown
    stats = get_tasks(app).stats()
    assert (stats.cancelled, stats.succeeded, stats.rejected) == (1, 1, 0)


async def test_ticks_missed_while_the_loop_was_blocked_are_skipped_not_burst(
    make_app: Any,
) -> None:
    app = make_app()
    skipped_at_run: list[int] = []  # the schedule's skipped count seen by each run
    handle: list[PeriodicTask] = []
    before: dict[str, int] = {}

    async def beat() -> None:
        skipped_at_run.append(handle[0].skipped if handle else 0)

    async def block_the_loop() -> None:
        while not handle[0].last.done():  # type: ignore[union-attr]  # no run about to start
            await anyio.sleep(0)
        before["runs"], before["skipped"] = len(skipped_at_run), handle[0].skipped
        time.sleep(10 * TICK)  # blocks the event loop on purpose: 10 ticks pass

    async with serve(app):
        handle.append(get_tasks(app).every(TICK, beat))
        await wait_until(lambda: len(skipped_at_run) >= 1)
        await get_tasks(app).schedule(block_the_loop).wait()
        await wait_until(lambda: len(skipped_at_run) > before["runs"])
        handle[0].cancel()
    # The first run after the block already saw the missed ticks counted as skipped: one run
    # for the late wake-up, not one per missed tick.
    assert skipped_at_run[before["runs"]] - before["skipped"] >= 5


@pytest.mark.parametrize(
    ("interval", "error", "match"),
    [
        (0, ValueError, "finite interval > 0"),
        (-1.5, ValueError, "finite interval > 0"),
        (float("nan"), ValueError, "finite interval > 0"),
        (float("inf"), ValueError, "finite interval > 0"),
        (datetime.timedelta(0), ValueError, "finite interval > 0"),
        ("5", TypeError, "number of seconds or a datetime.timedelta, not str"),
        (True, TypeError, "not bool"),
        (None, TypeError, "not NoneType"),
    ],
)
async def test_a_bad_interval_is_refused_at_the_call(
    make_app: Any, interval: Any, error: type[Exception], match: str
) -> None:
    app = make_app()

    async def beat() -> None:
        pass  # pragma: no cover

    async with serve(app):
        with pytest.raises(error, match=match):
            get_tasks(app).every(interval, beat)
        assert get_tasks(app).stats().scheduled == 0


async def test_bad_functions_and_arguments_are_refused_at_the_call(make_app: Any) -> None:
    app = make_app()

    async def beat(count: int) -> None:
        pass  # pragma: no cover

    def gen() -> Any:
        yield 1  # pragma: no cover

    async with serve(app):
        scheduler = get_tasks(app)
        with pytest.raises(TypeError, match="needs a callable, got int"):
            scheduler.every(1, 42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not an awaitable"):
            coro = beat(1)
            try:
                scheduler.every(1, coro)  # type: ignore[arg-type]
            finally:
                coro.close()
        with pytest.raises(TypeError, match="generator function"):
            scheduler.every(1, gen)
        with pytest.raises(TypeError, match="do not fit"):
            scheduler.every(1, beat)
        with pytest.raises(TypeError, match="do not fit"):
            scheduler.every(1, beat, 1, 2)
        with pytest.raises(TypeError, match="name must be a str"):
            scheduler.every(1, beat, 1, name=3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="on_error must accept two positional arguments"):
            scheduler.every(1, beat, 1, on_error=lambda: None)  # type: ignore[arg-type]
        assert scheduler.stats().scheduled == 0


async def test_every_outside_the_lifespan_raises(make_app: Any) -> None:
    app = make_app()

    async def beat() -> None:
        pass  # pragma: no cover

    with pytest.raises(FastAPITasksUninitializedAppError, match="runtime is not running"):
        get_tasks(app).every(1, beat)
    async with serve(app):
        pass
    with pytest.raises(FastAPITasksShutdownError, match="shutting down"):
        get_tasks(app).every(1, beat)


async def test_a_tick_refused_by_max_pending_is_logged_and_the_schedule_goes_on(
    make_app: Any, task_logs: pytest.LogCaptureFixture
) -> None:
    app = make_app(thread_limit=1, max_pending=1)
    hold = threading.Event()
    counter = Counter()

    def blocker() -> None:
        hold.wait(10)

    def beat() -> None:
        counter.hit()

    async with serve(app):
        scheduler = get_tasks(app)
        busy = scheduler.schedule(blocker)
        await busy.started.wait()
        scheduler.schedule(functools.partial(hold.wait, 10))  # fills the backlog
        periodic = scheduler.every(TICK, beat)
        await wait_until(lambda: scheduler.stats().rejected >= 2)
        assert periodic.active and periodic.runs == 0
        hold.set()
        await wait_until(lambda: periodic.runs >= 1)
        periodic.cancel()
    assert "was not scheduled: FastAPITasksQueueFullError" in task_logs.text


def test_a_periodic_task_is_not_made_by_hand() -> None:
    with pytest.raises(TypeError, match="call every\\(\\) on a scheduler"):
        PeriodicTask()


async def test_repr_names_the_schedule_not_its_arguments(make_app: Any) -> None:
    app = make_app()

    async def beat(secret: str) -> None:
        pass

    async with serve(app):
        periodic = get_tasks(app).every(3600, beat, "s3cr3t", name="beat")
        text = repr(periodic)
        periodic.cancel()
    assert text.startswith("<PeriodicTask name='beat' interval=3600.0s active")
    assert "s3cr3t" not in text
    assert "stopped" in repr(periodic)
