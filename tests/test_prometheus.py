"""The optional Prometheus exporter."""

import subprocess
import sys
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry

from fastapi_tasks import (
    FastAPITasksAlreadyAddedError,
    FastAPITasksShutdownError,
    Retry,
    Tasks,
    get_tasks,
)
from fastapi_tasks.prometheus import add_metrics_route, instrument
from fastapi_tasks.testing import wait_for_tasks

from .conftest import serve

pytestmark = [
    pytest.mark.anyio,
    # httpx's ASGITransport leaves its request-body generator suspended when an app reads the
    # body once (as prometheus_client's ASGI app does); trio's finalizer warns about it.
    pytest.mark.filterwarnings(
        "ignore:Async generator 'httpx._content.ByteStream.__aiter__':ResourceWarning"
    ),
]


def test_the_core_never_imports_prometheus_client() -> None:
    code = "import sys, fastapi_tasks.testing; print('prometheus_client' in sys.modules)"
    assert subprocess.check_output([sys.executable, "-c", code], text=True).strip() == "False"


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_counters_gauges_and_durations(make_app: Any) -> None:
    app = make_app(max_pending=50)
    registry = CollectorRegistry()
    instrument(app, registry=registry, max_task_names=2)
    add_metrics_route(app, registry=registry)
    release = anyio.Event()

    async def fails() -> None:
        raise ValueError

    @app.get("/boom")
    async def boom(tasks: Tasks) -> None:
        tasks.after_response.schedule(fails)
        raise RuntimeError

    async with serve(app, raise_app_exceptions=False) as client:
        scheduler = get_tasks(app)
        for name in "abcd":  # one after the other: a and b are the first two names seen
            await scheduler.task(name=name).schedule(anyio.sleep, 0).wait()
        await scheduler.task(name="a").schedule(fails).wait()
        waiting = scheduler.schedule(release.wait)
        await waiting.started.wait()
        await client.get("/boom")
        assert sample(registry, "fastapi_tasks_running") == 1
        release.set()
        await wait_for_tasks(app)
        scheduler.schedule(anyio.sleep_forever)
        text = (await client.get("/metrics")).text
    assert "fastapi_tasks_scheduled_total 7.0" in text
    assert sample(registry, "fastapi_tasks_scheduled_total") == 7
    assert sample(registry, "fastapi_tasks_finished_total", outcome="succeeded") == 5
    assert sample(registry, "fastapi_tasks_finished_total", outcome="failed") == 1
    assert sample(registry, "fastapi_tasks_finished_total", outcome="cancelled") == 1
    assert sample(registry, "fastapi_tasks_refused_total", outcome="discarded") == 1
    assert sample(registry, "fastapi_tasks_pending") == 0
    assert sample(registry, "fastapi_tasks_running") == 0
    count = "fastapi_tasks_task_duration_seconds_count"
    assert sample(registry, count, task="a", outcome="succeeded") == 1
    assert sample(registry, count, task="a", outcome="failed") == 1
    assert sample(registry, count, task="b", outcome="succeeded") == 1
    assert sample(registry, count, task="other", outcome="succeeded") == 3  # c, d, release.wait
    stats = get_tasks(app).stats()
    assert stats.scheduled == sample(registry, "fastapi_tasks_scheduled_total")


async def test_rejections_are_counted(make_app: Any) -> None:
    app = make_app()
    registry = CollectorRegistry()
    instrument(app, registry=registry)
    async with serve(app):
        pass
    with pytest.raises(FastAPITasksShutdownError, match="shutting down"):
        get_tasks(app).schedule(print)
    assert sample(registry, "fastapi_tasks_refused_total", outcome="rejected") == 1


def test_instrument_once_and_validates(make_app: Any) -> None:
    app = make_app()
    instrument(app, registry=CollectorRegistry())
    with pytest.raises(FastAPITasksAlreadyAddedError, match="already"):
        instrument(app, registry=CollectorRegistry())
    with pytest.raises(ValueError, match="max_task_names"):
        instrument(make_app(), registry=CollectorRegistry(), max_task_names=0)


async def test_the_endpoint_negotiates_and_compresses_without_redirect(make_app: Any) -> None:
    app = make_app()
    registry = CollectorRegistry()
    instrument(app, registry=registry)
    add_metrics_route(app, registry=registry)
    async with serve(app) as client:
        plain = await client.get("/metrics")
        gzipped = await client.get("/metrics", headers={"accept-encoding": "gzip"})
        openmetrics = await client.get(
            "/metrics", headers={"accept": "application/openmetrics-text"}
        )
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("text/plain")
    assert gzipped.headers["content-encoding"] == "gzip"
    assert "fastapi_tasks_scheduled_total" in gzipped.text  # httpx decompressed it
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")
    for name in ("abandoned", "enqueued", "enqueue_failed"):
        assert f"fastapi_tasks_{name}_total 0.0" in plain.text


async def test_abandoned_tasks_are_counted(make_app: Any) -> None:
    app = make_app(shutdown_timeout=0)
    registry = CollectorRegistry()
    instrument(app, registry=registry)
    async with serve(app):
        task = get_tasks(app).task(shield=True).schedule(anyio.sleep_forever)
        await task.started.wait()
    assert get_tasks(app).stats().abandoned == 1
    assert sample(registry, "fastapi_tasks_abandoned_total") == 1
    assert sample(registry, "fastapi_tasks_finished_total", outcome="cancelled") == 1


async def test_retries_and_skipped_ticks_are_counted(make_app: Any) -> None:
    app = make_app()
    registry = CollectorRegistry()
    instrument(app, registry=registry)
    attempts = 0
    release = anyio.Event()

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ValueError("not yet")

    async with serve(app):
        scheduler = get_tasks(app)
        task = scheduler.task(retry=Retry(attempts=3, backoff=0, jitter=False)).schedule(flaky)
        await task.wait()
        assert task.state.value == "succeeded"
        periodic = scheduler.every(0.01, release.wait)  # the first run blocks: ticks are skipped
        while get_tasks(app).stats().skipped < 2:
            await anyio.sleep(0.01)
        periodic.cancel()
        release.set()
        await wait_for_tasks(app)
        stats = get_tasks(app).stats()
    assert sample(registry, "fastapi_tasks_retried_total") == stats.retried == 2
    assert sample(registry, "fastapi_tasks_skipped_total") == stats.skipped >= 2
