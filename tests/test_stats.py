"""stats(): a JSON-ready snapshot whose counters always add up."""

import dataclasses
import json
import threading
from typing import Any

import anyio
import anyio.from_thread
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastapi_tasks import Tasks, TaskState, TaskStats, add_tasks, get_tasks
from fastapi_tasks.testing import wait_for_tasks

from .conftest import serve

pytestmark = pytest.mark.anyio

FIELDS = [
    "state",
    "pid",
    "thread_limit",
    "threads_busy",
    "scheduled",
    "pending",
    "waiting",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "abandoned",
    "retried",
    "rejected",
    "discarded",
    "deferred",
    "skipped",
    "enqueued",
    "enqueue_failed",
]


def check_invariant(stats: TaskStats) -> None:
    assert stats.scheduled == (
        stats.pending + stats.running + stats.succeeded + stats.failed + stats.cancelled
    ), stats
    assert stats.abandoned <= stats.cancelled
    assert min(dataclasses.astuple(stats)[1:]) >= 0, stats


async def test_snapshot_is_frozen_json_ready_and_complete(make_app: Any) -> None:
    app = make_app(thread_limit=7)

    @app.get("/health")
    async def health(tasks: Tasks) -> dict[str, int | str]:
        return tasks.stats().to_dict()

    before = get_tasks(app).stats()
    assert before.state == "idle"
    async with serve(app) as client:
        body = (await client.get("/health")).json()
    assert list(body) == FIELDS
    assert body["state"] == "running"
    assert body["thread_limit"] == 7
    assert isinstance(body["pid"], int)
    stats = get_tasks(app).stats()
    json.dumps(stats.to_dict())
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign"):
        stats.scheduled = 5  # type: ignore[misc]
    assert stats.state == "stopped"


async def test_counters_follow_a_request(make_app: Any) -> None:
    app = make_app()
    release = anyio.Event()
    snapshots: dict[str, TaskStats] = {}

    async def fails() -> None:
        raise ValueError

    @app.get("/")
    async def endpoint(tasks: Tasks) -> None:
        tasks.schedule(release.wait)
        tasks.schedule(fails)
        tasks.after_route.schedule(release.wait)
        tasks.after_response.schedule(release.wait)
        snapshots["in endpoint"] = tasks.stats()

    async with serve(app) as client:
        await client.get("/")
        snapshots["after response"] = get_tasks(app).stats()
        await wait_until_counts(app, running=3, failed=1)
        snapshots["running"] = get_tasks(app).stats()
        release.set()
        await wait_for_tasks(app)
        snapshots["done"] = get_tasks(app).stats()
    for snapshot in snapshots.values():
        check_invariant(snapshot)
    assert (snapshots["in endpoint"].scheduled, snapshots["in endpoint"].deferred) == (2, 2)
    assert (snapshots["after response"].scheduled, snapshots["after response"].deferred) == (4, 0)
    assert (snapshots["done"].succeeded, snapshots["done"].failed) == (3, 1)


async def wait_until_counts(app: FastAPI, **expected: int) -> None:
    with anyio.fail_after(5):
        while any(getattr(get_tasks(app).stats(), k) != v for k, v in expected.items()):
            await anyio.sleep(0.001)


def test_counters_stay_exact_when_many_threads_schedule() -> None:
    app = FastAPI()
    add_tasks(app)

    def noop() -> None:
        pass

    @app.post("/burst")
    def burst(tasks: Tasks) -> None:  # runs in a worker thread
        for _ in range(20):
            tasks.schedule(noop)
            tasks.after_response.schedule(noop)

    with TestClient(app) as client:
        threads = [
            threading.Thread(target=lambda: [client.post("/burst") for _ in range(5)])
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for _ in range(50):  # read while the threads schedule
            check_invariant(client.portal.call(lambda: get_tasks(app).stats()))
            check_invariant(get_tasks(app).stats())  # from this (non-loop) thread
        for thread in threads:
            thread.join()
        from fastapi_tasks.testing import wait_for_tasks_sync

        wait_for_tasks_sync(client)
        stats = get_tasks(app).stats()
    check_invariant(stats)
    assert (stats.scheduled, stats.succeeded, stats.deferred) == (800, 800, 0)


# -- property: random mixes of tasks and a shutdown at a random point ----------------------

task_specs = st.tuples(
    st.sampled_from(["async", "sync"]),
    st.sampled_from(["succeed", "fail", "slow"]),
    st.booleans(),  # shielded
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=st.lists(task_specs, max_size=25), cut=st.integers(min_value=0, max_value=25))
def test_every_task_is_accounted_for(specs: list[tuple[str, str, bool]], cut: int) -> None:
    """Schedule ``specs``, shut down after the first ``cut`` of them (the rest are refused), and
    check the invariant on the way and each task's fate at the end."""

    async def scenario() -> None:
        app = FastAPI()
        add_tasks(app, thread_limit=3)
        never = threading.Event()
        handles: list[tuple[Any, str, bool]] = []

        async def async_body(outcome: str) -> None:
            await anyio.sleep(0)
            if outcome == "fail":
                raise RuntimeError(outcome)
            if outcome == "slow":  # still running when the shutdown begins
                while get_tasks(app).stats().state == "running":
                    await anyio.sleep(0.001)

        def sync_body(outcome: str) -> None:
            if outcome == "fail":
                raise RuntimeError(outcome)
            if outcome == "slow":  # still running when the shutdown begins
                while get_tasks(app).stats().state == "running" and not never.wait(0.002):
                    anyio.from_thread.check_cancelled()

        refused = 0
        async with serve(app):
            scheduler = get_tasks(app)
            for kind, outcome, shielded in specs[:cut]:
                body = async_body if kind == "async" else sync_body
                task = scheduler.task(shield=shielded).schedule(body, outcome)
                handles.append((task, outcome, shielded))
                check_invariant(scheduler.stats())
            await anyio.sleep(0)
        for _ in specs[cut:]:
            with pytest.raises(RuntimeError, match="shutting down"):
                get_tasks(app).schedule(print)
            refused += 1
        stats = get_tasks(app).stats()
        check_invariant(stats)
        assert (stats.pending, stats.running, stats.scheduled) == (0, 0, len(handles))
        assert stats.rejected == refused
        tally = {state: 0 for state in TaskState}
        for task, outcome, shielded in handles:
            tally[task.state] += 1
            expected = TaskState.FAILED if outcome == "fail" else TaskState.SUCCEEDED
            if shielded:
                assert task.state is expected, (task, outcome)
            else:
                assert task.state in (expected, TaskState.CANCELLED), (task, outcome)
        assert (stats.succeeded, stats.failed, stats.cancelled) == (
            tally[TaskState.SUCCEEDED],
            tally[TaskState.FAILED],
            tally[TaskState.CANCELLED],
        )

    async def bounded() -> None:
        with anyio.fail_after(20):  # a hang in one example fails it instead of the whole run
            await scenario()

    anyio.run(bounded)
