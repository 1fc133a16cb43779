"""The shutdown coordinator, driven through the real lifespan (asgi-lifespan).

Tests that act *during* the drain start the lifespan exit in a task group and watch the runtime's
state, so every step is synchronised on what the runtime reports, not on sleeps."""

import logging
import threading
from typing import Any

import anyio
import anyio.from_thread
import httpx
import pytest

from fastapi_tasks import FastAPITasksShutdownError, Tasks, TaskState, get_tasks
from fastapi_tasks import _shutdown as shutdown_module

from .conftest import lifespan_in_background, serve

pytestmark = pytest.mark.anyio


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.001)


def draining(app: Any) -> Any:
    return lambda: get_tasks(app).stats().state == "draining"


async def test_unshielded_work_is_cancelled_and_shielded_work_completes(make_app: Any) -> None:
    app = make_app(thread_limit=2)
    done: list[str] = []
    never = threading.Event()

    async def shielded_async() -> None:
        while get_tasks(app).stats().state != "draining":  # still running when the drain begins
            await anyio.sleep(0.001)
        done.append("shielded async")

    def shielded_sync(tag: str) -> None:
        done.append(tag)

    def cooperative_sync() -> None:
        while not never.wait(0.005):
            anyio.from_thread.check_cancelled()  # raises once shutdown cancels the task

    def never_starts() -> None:
        done.append("unstarted sync ran")  # pragma: no cover

    async with serve(app):
        scheduler = get_tasks(app)
        sleepers = [scheduler.schedule(anyio.sleep_forever) for _ in range(100)]
        busy = [scheduler.schedule(cooperative_sync) for _ in range(2)]
        queued = [scheduler.schedule(never_starts) for _ in range(10)]
        shielded = [
            scheduler.task(shield=True).schedule(shielded_async),
            scheduler.task(shield=True).schedule(shielded_sync, "shielded sync (queued)"),
        ]
        for task in busy:
            await task.started.wait()
        await wait_until(lambda: all(t.state is TaskState.RUNNING for t in sleepers))
        assert scheduler.stats().threads_busy == 2
    stats = get_tasks(app).stats()
    assert sorted(done) == ["shielded async", "shielded sync (queued)"]
    assert all(t.state is TaskState.CANCELLED for t in sleepers + busy + queued)
    assert all(t.state is TaskState.SUCCEEDED for t in shielded)
    assert (stats.state, stats.cancelled, stats.succeeded, stats.abandoned) == (
        "stopped",
        112,
        2,
        0,
    )
    assert stats.pending == stats.running == 0


async def test_the_drain_waits_for_a_running_unshielded_sync_task(make_app: Any) -> None:
    app = make_app()
    release = threading.Event()
    entered = threading.Event()

    def stubborn() -> None:  # never checks for cancellation: cannot be interrupted
        entered.set()
        release.wait(10)

    async with lifespan_in_background(app) as life:
        task = get_tasks(app).schedule(stubborn)
        await anyio.to_thread.run_sync(entered.wait, 5)  # it is inside its thread now
        life.shutdown()
        await wait_until(draining(app))
        assert task.state is TaskState.RUNNING  # the drain is waiting for it
        release.set()
    assert task.state is TaskState.SUCCEEDED
    assert get_tasks(app).stats().state == "stopped"


async def test_schedule_is_refused_in_every_mode_and_thread_once_shutdown_began(
    make_app: Any, task_logs: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    endpoint_may_finish = anyio.Event()
    in_endpoint = anyio.Event()
    hold_drain = anyio.Event()
    refused: list[str] = []

    @app.get("/slow")
    async def slow(tasks: Tasks) -> str:
        tasks.after_response.task(name="late-mail").schedule(print, "mail")
        in_endpoint.set()
        await endpoint_may_finish.wait()
        try:
            tasks.after_route.schedule(print, "x")
        except FastAPITasksShutdownError:
            refused.append("after_route in the request")
        return "done"

    def from_a_thread() -> None:
        try:
            get_tasks(app).schedule(print, "x")
        except FastAPITasksShutdownError:
            refused.append("thread")

    async with lifespan_in_background(app) as life:
        get_tasks(app).task(shield=True).schedule(hold_drain.wait)  # keeps the drain open
        transport = httpx.ASGITransport(life.app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
            anyio.create_task_group() as tg,
        ):
            responses: list[httpx.Response] = []

            async def request() -> None:
                responses.append(await client.get("/slow"))

            tg.start_soon(request)
            await in_endpoint.wait()
            life.shutdown()
            await wait_until(draining(app))
            with pytest.raises(FastAPITasksShutdownError, match="shutting down"):
                get_tasks(app).schedule(print, "x")
            await anyio.to_thread.run_sync(from_a_thread)
            endpoint_may_finish.set()  # its after-response task is released during the drain
            await wait_until(lambda: bool(responses))
            hold_drain.set()
    assert responses[0].json() == "done"
    assert sorted(refused) == ["after_route in the request", "thread"]
    stats = get_tasks(app).stats()
    assert stats.rejected == 3  # 2 direct calls + the after_route call
    assert stats.discarded == 1  # the after-response task, whose moment came too late
    assert stats.scheduled == 1  # only the shielded holder
    assert "late-mail" in task_logs.text
    assert "began shutting down before their moment" in task_logs.text


async def test_shutdown_timeout_abandons_and_names_stragglers(
    make_app: Any, task_logs: pytest.LogCaptureFixture
) -> None:
    app = make_app(shutdown_timeout=0.2)
    thread_may_end = threading.Event()
    entered = threading.Event()

    def slow_sync() -> None:
        entered.set()
        thread_may_end.wait(10)

    try:
        async with serve(app):
            scheduler = get_tasks(app)
            stuck_async = scheduler.task(name="stuck-async", shield=True).schedule(
                anyio.sleep_forever
            )
            stuck_sync = scheduler.task(name="stuck-sync", shield=True).schedule(slow_sync)
            await stuck_async.started.wait()
            await anyio.to_thread.run_sync(entered.wait, 5)
        stats = get_tasks(app).stats()
    finally:
        thread_may_end.set()  # the abandoned thread ends on its own afterwards
    assert stuck_async.state is TaskState.CANCELLED
    assert stuck_sync.state is TaskState.CANCELLED
    assert (stats.abandoned, stats.cancelled, stats.running) == (2, 2, 0)
    abandon_lines = [r.getMessage() for r in task_logs.records if "abandoning" in r.getMessage()]
    assert any("stuck-async" in line for line in abandon_lines)
    assert any("stuck-sync" in line for line in abandon_lines)
    assert "2 abandoned" in task_logs.text
    # the abandoned thread ends now, while this loop still runs: its late end is logged (the
    # report is a non-blocking callback, so the thread never waits for the loop)
    with anyio.fail_after(5):
        while "stuck-sync completed" not in task_logs.text:
            await anyio.sleep(0.001)
    assert "after the shutdown deadline gave up on it" in task_logs.text


async def test_progress_lines_name_the_tasks_holding_shutdown(
    make_app: Any, task_logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutdown_module, "PROGRESS_INTERVAL", 0.02)
    app = make_app()
    release = anyio.Event()
    progress_seen = anyio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "still draining" in record.getMessage():
                progress_seen.set()

    watch = Watch()
    logging.getLogger("fastapi_tasks").addHandler(watch)
    try:
        async with lifespan_in_background(app) as life:
            get_tasks(app).task(name="nightly-report", shield=True).schedule(release.wait)
            life.shutdown()
            with anyio.fail_after(5):
                await progress_seen.wait()
            release.set()
    finally:
        logging.getLogger("fastapi_tasks").removeHandler(watch)
    progress = [r.getMessage() for r in task_logs.records if "still draining" in r.getMessage()]
    assert "nightly-report" in progress[0]
    summary = [r.getMessage() for r in task_logs.records if "drained in" in r.getMessage()]
    assert summary[-1].endswith("1 completed, 0 cancelled, 0 abandoned")


async def test_ten_thousand_unshielded_tasks_are_all_cancelled(make_app: Any) -> None:
    app = make_app(thread_limit=4)
    never = threading.Event()

    def cooperative() -> None:
        while not never.wait(0.005):
            anyio.from_thread.check_cancelled()

    async with serve(app):
        scheduler = get_tasks(app)
        for _ in range(10_000):
            scheduler.schedule(anyio.sleep_forever)
        for _ in range(1_000):
            scheduler.schedule(cooperative)
        await wait_until(lambda: scheduler.stats().threads_busy == 4)
    stats = get_tasks(app).stats()
    assert (stats.scheduled, stats.cancelled, stats.pending, stats.running) == (
        11_000,
        11_000,
        0,
        0,
    )
