"""Sync-first: plain def tasks run on the runtime's own bounded threads, never on the threads
FastAPI uses for def endpoints."""

import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest

from fastapi_tasks import Tasks, TaskState, get_tasks
from fastapi_tasks.testing import wait_for_tasks

from .conftest import serve

pytestmark = pytest.mark.anyio


class Gate:
    """Sync tasks block in ``work`` until the gate opens; tracks how many run at once.

    A context manager, so that a failing assertion still opens it (otherwise the shutdown
    drain would wait for the blocked threads)."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.current = 0
        self.peak = 0
        self.done = 0

    def __enter__(self) -> "Gate":
        return self

    def __exit__(self, *exc: object) -> None:
        self.opened.set()

    def work(self) -> None:
        with self.lock:
            self.current += 1
            self.peak = max(self.peak, self.current)
        self.opened.wait(timeout=30)
        with self.lock:
            self.current -= 1
            self.done += 1


def default_threads_busy() -> int:
    """Tokens borrowed from anyio's default limiter (FastAPI's def endpoints); loop thread."""
    return int(anyio.to_thread.current_default_thread_limiter().statistics().borrowed_tokens)


async def test_a_def_endpoint_answers_while_sync_tasks_fill_the_runtime(make_app: Any) -> None:
    app = make_app(thread_limit=2)
    gate = Gate()

    @app.get("/sync")
    def sync_endpoint() -> str:
        return threading.current_thread().name

    @app.post("/queue")
    def queue(tasks: Tasks) -> int:
        for _ in range(50):
            tasks.schedule(gate.work)
        return 50

    async with serve(app) as client:
        with gate:
            assert (await client.post("/queue")).json() == 50
            # all 50 are blocked (2 running, 48 queued); the def endpoint answers at once
            with anyio.fail_after(5):
                while gate.current < 2:
                    await anyio.sleep(0.001)
                for _ in range(20):
                    assert (await client.get("/sync")).status_code == 200
            stats = get_tasks(app).stats()
            assert (stats.threads_busy, stats.running, stats.waiting, stats.pending) == (
                2,
                2,
                48,
                48,
            )
            assert default_threads_busy() == 0
        await wait_for_tasks(app, timeout=30)
    assert gate.peak == 2
    assert gate.done == 50


async def test_sync_tasks_never_borrow_the_default_limiter(make_app: Any) -> None:
    app = make_app(thread_limit=3)
    gate = Gate()
    async with serve(app):
        scheduler = get_tasks(app)
        with gate:
            handles = [scheduler.schedule(gate.work) for _ in range(3)]
            for handle in handles:
                await handle.started.wait()
            assert scheduler.stats().threads_busy == 3
            assert default_threads_busy() == 0
        for handle in handles:
            await handle.wait()
    assert all(handle.state is TaskState.SUCCEEDED for handle in handles)


async def test_thread_limit_of_one_runs_sync_tasks_one_at_a_time_in_order(make_app: Any) -> None:
    app = make_app(thread_limit=1)
    order: list[int] = []
    async with serve(app):
        scheduler = get_tasks(app)
        for i in range(20):
            scheduler.schedule(order.append, i)
        await wait_for_tasks(app)
    assert order == list(range(20))
