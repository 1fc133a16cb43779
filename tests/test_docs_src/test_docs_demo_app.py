"""docs_src/demo_app.py: the app behind the README's `uvicorn docs_src.demo_app:app`."""

import asyncio
import contextvars
import gc
import re
import warnings
from types import SimpleNamespace

import anyio
import anyio.lowlevel
import httpx
import pytest
from asgi_lifespan import LifespanManager

from fastapi_tasks import TaskStats
from fastapi_tasks.testing import wait_for_tasks


def plain(lines) -> list[str]:
    """The activity lines without their times relative to the request."""
    result = []
    for line in lines:
        line = re.sub(r"^\+\d+\.\d{3}s ", "", line)
        line = re.sub(r", started \+\d+\.\d{3}s\)$", ")", line)
        result.append(re.sub(r" \(started \+\d+\.\d{3}s\)$", "", line))
    return result


@pytest.fixture
def demo(load_example, monkeypatch):
    module = load_example("docs_src.demo_app")
    monkeypatch.setattr(module, "WORK_SECONDS", 0)
    monkeypatch.setattr(module, "REPORT_SECONDS", 0)
    return module


@pytest.mark.anyio
async def test_orders_use_all_three_timing_modes(demo, serve) -> None:
    async with serve(demo.app) as client:
        response = await client.post("/orders/1", params={"email": "ada@example.com"})
        assert response.json() == {"order_id": 1}
        await wait_for_tasks(demo.app)
        activity = plain((await client.get("/activity")).json())
    assert activity[0] == "app started"
    assert sorted(activity[1:]) == [
        "[after_response] receipt for order 1 sent to ada@example.com",
        "[after_route] audit entry written for order 1 (sync task)",
        "[now] stock reserved for order 1",
    ]


@pytest.mark.anyio
async def test_cancelled_order_discards_its_receipt(demo, serve) -> None:
    async with serve(demo.app) as client:
        assert (await client.post("/orders/5000/cancel")).status_code == 404
        assert (await client.post("/orders/7/cancel")).json() == {"cancelled": 7}
        await wait_for_tasks(demo.app)
        health = (await client.get("/health")).json()
    assert health["discarded"] == 1
    assert health["succeeded"] == 1
    assert plain(demo.activity)[1:-1] == [
        "[after_response] receipt for order 7 sent to nobody@example.com"
    ]


@pytest.mark.anyio
async def test_failing_tasks_reach_their_handlers(demo, serve) -> None:
    async with serve(demo.app) as client:
        await client.post("/partners/5")
        await wait_for_tasks(demo.app)
        health = (await client.get("/health")).json()
    assert health["failed"] == 2
    assert sorted(plain(demo.activity)[1:-1]) == [
        "[on_error] partner call for order 5 will be retried tonight",
        "[on_error] partner-call-default-handler failed: "
        "ConnectionError('partner API refused order 5')",
    ]


@pytest.mark.anyio
async def test_health_is_a_stats_snapshot(demo, serve) -> None:
    async with serve(demo.app) as client:
        health = (await client.get("/health")).json()
    assert set(health) == set(TaskStats.__dataclass_fields__)
    assert (health["state"], health["thread_limit"], health["scheduled"]) == ("running", 8, 0)


@pytest.mark.anyio
async def test_shielded_report_finishes_before_the_app_stops(
    demo, serve_in_background, monkeypatch
) -> None:
    report_started = anyio.Event()
    finish_report = anyio.Event()
    monkeypatch.setattr(demo, "REPORT_SECONDS", 60)

    async def controlled_sleep(seconds: float) -> None:
        if seconds == 60:  # the report: wait for the test instead of a minute
            report_started.set()
            await finish_report.wait()
        await anyio.lowlevel.checkpoint()

    monkeypatch.setattr(demo, "anyio", SimpleNamespace(sleep=controlled_sleep))
    async with serve_in_background(demo.app) as server:
        assert (await server.client.post("/reports/9")).json() == {"task": "build-report"}
        with anyio.fail_after(5):
            await report_started.wait()
        server.begin_shutdown()
        await server.wait_until_draining()
        assert "[shielded] report 9 is ready" not in plain(demo.activity)
        finish_report.set()
        await server.wait_stopped()
    assert plain(demo.activity)[-3:] == [
        "[shielded] building report 9...",
        "[shielded] report 9 is ready",
        "app stopped (after the task drain)",
    ]


def test_demo_app_on_a_bare_asyncio_loop(demo) -> None:
    """Like ``uvicorn docs_src.demo_app:app``: a plain asyncio loop, in a fresh context where
    no async library has been recorded (pytest's anyio runner would record one). Guards against
    starting workers from a bare loop callback, where anyio cannot detect the event loop when
    sniffio is installed."""

    loop_errors: list[str] = []

    def record_loop_error(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        loop_errors.append(repr(context.get("exception")))  # keep no traceback alive

    async def main() -> list[str]:
        asyncio.get_running_loop().set_exception_handler(record_loop_error)
        async with LifespanManager(demo.app) as manager:
            transport = httpx.ASGITransport(manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
                await client.post("/orders/1", params={"email": "ada@example.com"})
                await wait_for_tasks(demo.app, timeout=0.5)
        return plain(demo.activity)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a worker coroutine never awaited
        try:
            activity = contextvars.Context().run(asyncio.run, main())
        finally:
            gc.collect()
    assert loop_errors == []
    assert "[now] stock reserved for order 1" in activity
    assert "[after_response] receipt for order 1 sent to ada@example.com" in activity


@pytest.mark.anyio
async def test_home_redirects_to_the_docs_and_activity_shows_relative_times(demo, serve) -> None:
    async with serve(demo.app) as client:
        home = await client.get("/")
        await client.post("/orders/1", params={"email": "ada@example.com"})
        await wait_for_tasks(demo.app)
        activity = (await client.get("/activity")).json()
        metrics = await client.get("/metrics")
    assert home.status_code == 307
    assert home.headers["location"] == "/docs"
    timed = [line for line in activity if line != "app started"]
    assert len(timed) == 3
    assert all(re.match(r"^\+\d+\.\d{3}s \[", line) for line in timed), timed
    assert metrics.status_code == 200
