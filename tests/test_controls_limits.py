"""Concurrency limits: add_tasks(async_limit=N) and TaskConfig(limit=N) / tasks.task(limit=N)."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from fastapi_tasks import (
    FastAPITasksQueueFullError,
    TaskConfig,
    Tasks,
    TaskState,
    add_tasks,
    get_tasks,
)
from fastapi_tasks._lifespan import get_runtime
from fastapi_tasks._limits import Slots

from .conftest import serve

pytestmark = pytest.mark.anyio


class Gates:
    """Tasks that record when they start and wait for their own gate to open."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.gates: dict[int, anyio.Event] = {}
        self.changed = anyio.Event()

    async def job(self, number: int) -> int:
        self.gates[number] = anyio.Event()
        self.started.append(number)
        self.changed.set()
        await self.gates[number].wait()
        return number

    async def until_number_started(self, number: int) -> None:
        while number not in self.started:
            self.changed = anyio.Event()
            await self.changed.wait()

    async def until_started(self, count: int) -> None:
        while len(self.started) < count:
            self.changed = anyio.Event()
            await self.changed.wait()


async def settle() -> None:
    """Let every task that can take a step take it (no timing: a few loop turns)."""
    for _ in range(10):
        await anyio.sleep(0)


async def test_tasks_of_one_name_run_at_most_limit_at_once_in_fifo_order(make_app: Any) -> None:
    app = make_app()
    gates = Gates()
    async with serve(app):
        email = get_tasks(app).task(name="send-email", limit=1)
        handles = [email.schedule(gates.job, n) for n in range(4)]
        await gates.until_started(1)
        await settle()
        stats = get_tasks(app).stats()
        assert (stats.running, stats.pending, stats.waiting) == (1, 3, 3)
        for n in range(4):
            await gates.until_started(n + 1)
            await settle()
            assert gates.started == list(range(n + 1))  # never more than one at a time
            gates.gates[n].set()
        for handle in handles:
            await handle.wait()
        assert [handle.result() for handle in handles] == [0, 1, 2, 3]
        stats = get_tasks(app).stats()
        assert (stats.succeeded, stats.waiting, stats.pending) == (4, 0, 0)


async def test_other_names_are_not_held_back_by_a_full_limit(make_app: Any) -> None:
    app = make_app()
    gates = Gates()
    async with serve(app):
        tasks = get_tasks(app)
        tasks.task(name="a", limit=1).schedule(gates.job, 1)
        queued = tasks.task(name="a", limit=1).schedule(gates.job, 2)
        other = tasks.task(name="b", limit=1).schedule(gates.job, 3)
        plain = tasks.schedule(gates.job, 4)
        await gates.until_started(3)
        await settle()
        assert sorted(gates.started) == [1, 3, 4]
        assert queued.state is TaskState.PENDING
        for n in (1, 2, 3, 4):
            await gates.until_started(min(n + 2, 4))
            gates.gates[n].set()
        await other.wait()
        await plain.wait()
        await queued.wait()
        assert queued.result() == 2


async def test_async_limit_bounds_async_tasks_and_leaves_sync_tasks_alone(make_app: Any) -> None:
    app = make_app(async_limit=2, thread_limit=2)
    gates = Gates()
    release_sync = threading.Event()
    sync_started = threading.Event()

    def sync_job() -> str:
        sync_started.set()
        release_sync.wait(10)
        return "sync"

    async with serve(app):
        tasks = get_tasks(app)
        handles = [tasks.task(name=f"job-{n}").schedule(gates.job, n) for n in range(5)]
        sync = tasks.schedule(sync_job)
        assert await anyio.to_thread.run_sync(sync_started.wait, 5)
        await gates.until_started(2)
        await settle()
        assert len(gates.started) == 2
        stats = tasks.stats()
        assert (stats.running, stats.pending, stats.waiting) == (3, 3, 3)
        release_sync.set()
        await sync.wait()
        for n in range(5):
            await gates.until_started(min(n + 2, 5))
            await settle()
            running = [m for m in gates.started if not gates.gates[m].is_set()]
            assert len(running) <= 2
            gates.gates[gates.started[n]].set()
        for handle in handles:
            await handle.wait()
        assert tasks.stats().succeeded == 6


async def test_a_limit_applies_to_sync_tasks_too(make_app: Any) -> None:
    app = make_app(thread_limit=4)
    release = threading.Event()
    lock = threading.Lock()
    running: list[int] = []
    most = 0

    def job(n: int) -> int:
        nonlocal most
        with lock:
            running.append(n)
            most = max(most, len(running))
        release.wait(10)
        with lock:
            running.remove(n)
        return n

    async with serve(app):
        limited = get_tasks(app).task(name="report", limit=2)
        handles = [limited.schedule(job, n) for n in range(5)]
        while len(running) < 2:
            await anyio.sleep(0.001)
        await settle()
        stats = get_tasks(app).stats()
        assert (stats.running, stats.waiting) == (2, 3)
        release.set()
        for handle in handles:
            await handle.wait()
        assert [handle.result() for handle in handles] == list(range(5))
        assert most == 2


async def test_max_pending_counts_tasks_waiting_for_a_limit(make_app: Any) -> None:
    app = make_app(max_pending=2)
    gates = Gates()
    async with serve(app):
        limited = get_tasks(app).task(name="x", limit=1)
        first = limited.schedule(gates.job, 0)
        limited.schedule(gates.job, 1)
        limited.schedule(gates.job, 2)
        with pytest.raises(FastAPITasksQueueFullError, match="max_pending=2"):
            limited.schedule(gates.job, 3)
        await gates.until_started(1)
        stats = get_tasks(app).stats()
        assert (stats.rejected, stats.scheduled, stats.waiting) == (1, 3, 2)
        assert first.state is TaskState.RUNNING
        gates.gates[0].set()
        for n in (1, 2):
            await gates.until_started(n + 1)
            gates.gates[n].set()


async def test_a_deferred_task_over_the_limit_waits_without_max_pending(make_app: Any) -> None:
    app = make_app(max_pending=1)
    gates = Gates()
    handles: list[Any] = []

    @app.post("/")
    async def endpoint(tasks: Tasks) -> None:
        limited = tasks.task(name="x", limit=1)
        handles.extend(limited.after_route.schedule(gates.job, n) for n in range(3))

    async with serve(app) as client:
        assert (await client.post("/")).status_code == 200
        await gates.until_started(1)
        assert get_tasks(app).stats().waiting == 2
        for n in range(3):
            await gates.until_started(n + 1)
            gates.gates[n].set()
        for handle in handles:
            await handle.wait()
        assert get_tasks(app).stats().succeeded == 3


async def test_shutdown_cancels_unshielded_waiters_and_runs_shielded_ones(make_app: Any) -> None:
    app = make_app()
    gates = Gates()
    async with LifespanManager(app):
        tasks = get_tasks(app)
        first = tasks.task(name="x", limit=1).schedule(gates.job, 0)
        dropped = tasks.task(name="x", limit=1).schedule(gates.job, 1)
        kept = tasks.task(name="x", limit=1, shield=True).schedule(gates.job, 2)
        await gates.until_started(1)

        async def open_gates() -> None:
            # the drain cancelled the first task (it freed its slot); the shielded one runs
            await gates.until_started(2)
            gates.gates[2].set()

        # the drain runs when the lifespan ends; the helper task lives on the app's loop
        tasks.task(shield=True).schedule(open_gates)
    assert first.state is TaskState.CANCELLED
    assert dropped.state is TaskState.CANCELLED and dropped.attempts == 0
    assert kept.result() == 2
    assert gates.started == [0, 2]
    stats = get_tasks(app).stats()
    assert (stats.cancelled, stats.succeeded, stats.waiting, stats.pending) == (2, 2, 0, 0)


async def test_cancelling_a_waiter_frees_its_place_at_once(make_app: Any) -> None:
    app = make_app()
    gates = Gates()
    async with serve(app):
        limited = get_tasks(app).task(name="x", limit=1)
        first = limited.schedule(gates.job, 0)
        second = limited.schedule(gates.job, 1)
        third = limited.schedule(gates.job, 2)
        await gates.until_started(1)
        assert get_tasks(app).stats().waiting == 2
        assert second.cancel() is True
        assert second.state is TaskState.CANCELLED
        assert get_tasks(app).stats().waiting == 1
        gates.gates[0].set()
        await gates.until_started(2)
        gates.gates[2].set()
        await third.wait()
        await first.wait()
        assert gates.started == [0, 2]
        assert second.cancel() is False


def test_slots_hand_over_in_fifo_order_with_each_waiters_own_limit() -> None:
    slots = Slots()
    assert slots.try_take(1)
    big = slots.queue(3)
    small = slots.queue(1)
    assert not slots.try_take(5)  # never overtakes the queue
    slots.give_back()
    assert big.granted and not small.granted
    slots.withdraw(big)  # a granted waiter that no longer wants its slot gives it back
    assert small.granted
    assert slots.held == 1


@pytest.mark.parametrize(
    ("limit", "error", "match"),
    [
        (0, ValueError, "limit must be >= 1"),
        ("2", TypeError, "limit must be an int"),
        (True, TypeError, "limit must be an int"),
    ],
)
def test_bad_limits_are_refused(limit: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        TaskConfig(limit=limit)
    with pytest.raises(error, match=match.replace("limit", "async_limit")):
        add_tasks(FastAPI(), async_limit=limit)


async def test_a_waiter_cancelled_just_as_it_got_its_slot_gives_it_back_once(
    make_app: Any,
) -> None:
    app = make_app()
    gates = Gates()
    async with serve(app):
        limited = get_tasks(app).task(name="x", limit=1)
        first = limited.schedule(gates.job, 0)
        second = limited.schedule(gates.job, 1)
        await gates.until_started(1)
        gates.gates[0].set()
        await first.wait()  # the slot went to `second`, which may not have resumed yet
        assert second.cancel() is True
        await second.wait()
        await settle()
        slots = get_runtime(app).controls.name_slots["x"]
        assert (slots.held, len(slots.waiters)) == (0, 0)
        third = limited.schedule(gates.job, 2)
        fourth = limited.schedule(gates.job, 3)
        await gates.until_number_started(2)
        await settle()
        assert 3 not in gates.started  # still one at a time
        gates.gates[2].set()
        await gates.until_number_started(3)
        gates.gates[3].set()
        await third.wait()
        await fourth.wait()
