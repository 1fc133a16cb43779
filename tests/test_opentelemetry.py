"""OpenTelemetry tracing of task runs, checked with the SDK's in-memory exporter."""

import inspect
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.from_thread
import pytest
from fastapi import FastAPI

pytest.importorskip(
    "opentelemetry.sdk", reason="needs the opentelemetry extra (pip install '.[test]')"
)

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

from fastapi_tasks import (
    FastAPITasksAlreadyAddedError,
    FastAPITasksUninitializedAppError,
    Retry,
    Task,
    Tasks,
    TaskState,
    add_tasks,
    get_tasks,
)
from fastapi_tasks import prometheus as task_metrics
from fastapi_tasks.opentelemetry import TaskTracer, instrument
from fastapi_tasks.testing import wait_for_tasks

from .conftest import serve

pytestmark = pytest.mark.anyio


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    spans = spans_named(exporter, name)
    assert len(spans) == 1, [span.name for span in exporter.get_finished_spans()]
    return spans[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_without_the_extra_the_module_says_what_to_install() -> None:
    code = (
        "import sys, fastapi_tasks, fastapi_tasks.testing\n"
        "for name in [name for name in sys.modules if name.startswith('opentelemetry')]:\n"
        "    del sys.modules[name]\n"
        "sys.modules['opentelemetry'] = None\n"  # as if it were not installed
        "try:\n"
        "    import fastapi_tasks.opentelemetry\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    output = subprocess.check_output([sys.executable, "-c", code], text=True).strip()
    assert output == (
        "fastapi_tasks.opentelemetry needs the opentelemetry extra: "
        "pip install 'fastapi-tasks[opentelemetry]'"
    )


async def test_a_task_span_is_a_child_of_the_span_current_at_schedule(
    make_app: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = make_app()
    instrument(app, tracer_provider=provider)
    tracer = provider.get_tracer("test")

    async def notify(user: str) -> None:
        with tracer.start_as_current_span("inside-async"):
            await anyio.sleep(0)

    def render(user: str) -> None:
        with tracer.start_as_current_span("inside-sync"):  # in a worker thread
            pass

    @app.post("/users/{user}")
    async def create(user: str, tasks: Tasks) -> None:
        with tracer.start_as_current_span("request"):
            tasks.task(name="notify").schedule(notify, user)
            tasks.task(name="render").schedule(render, user)

    async with serve(app) as client:
        await client.post("/users/alice")
        await wait_for_tasks(app)
    request = only(exporter, "request")
    for name, inner, kind, func in (
        ("notify", "inside-async", "async", notify),
        ("render", "inside-sync", "sync", render),
    ):
        span = only(exporter, name)
        assert span.context.trace_id == request.context.trace_id
        assert parent_of(span) == request.context.span_id
        assert parent_of(only(exporter, inner)) == span.context.span_id  # current while running
        assert span.kind is trace.SpanKind.INTERNAL
        assert span.status.status_code is StatusCode.UNSET
        attributes = dict(span.attributes or {})
        pending = attributes.pop("fastapi_tasks.task.pending_seconds")
        assert isinstance(pending, float) and pending >= 0
        assert attributes == {
            "fastapi_tasks.task.name": name,
            "fastapi_tasks.task.function": f"{__name__}.{func.__qualname__}",
            "fastapi_tasks.task.timing": "now",
            "fastapi_tasks.task.kind": kind,
            "fastapi_tasks.task.shielded": False,
            "fastapi_tasks.task.attempt": 1,
            "fastapi_tasks.task.outcome": "succeeded",
        }
        assert "alice" not in str(span.to_json())  # argument values are never recorded


async def test_deferred_tasks_keep_the_request_trace_and_say_their_timing(
    make_app: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = make_app()
    instrument(app, tracer_provider=provider)
    tracer = provider.get_tracer("test")

    async def job() -> None:
        pass

    def sync_job() -> None:
        pass

    @app.get("/")
    async def endpoint(tasks: Tasks) -> None:
        with tracer.start_as_current_span("request"):
            tasks.after_route.task(name="route").schedule(job)
            tasks.after_response.task(name="response").schedule(job)
            tasks.after_response.task(name="response-sync").schedule(sync_job)

    async with serve(app) as client:
        await client.get("/")
        await wait_for_tasks(app)
    request = only(exporter, "request")
    for name, timing in (
        ("route", "after_route"),
        ("response", "after_response"),
        ("response-sync", "after_response"),
    ):
        span = only(exporter, name)
        assert parent_of(span) == request.context.span_id
        assert (span.attributes or {})["fastapi_tasks.task.timing"] == timing


async def test_a_failure_is_recorded_with_status_error(
    make_app: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = make_app()
    instrument(app, tracer_provider=provider)
    tracer = provider.get_tracer("test")

    async def on_error(task: Task[..., Any], error: Exception) -> None:
        with tracer.start_as_current_span("handler"):
            pass

    async def broken() -> None:
        raise ValueError("no such user")

    def broken_sync() -> None:
        raise KeyError("gone")

    async with serve(app):
        scheduler = get_tasks(app).task(on_error=on_error)
        scheduler.task(name="async").schedule(broken)
        scheduler.task(name="sync").schedule(broken_sync)
        await wait_for_tasks(app)
    handlers = spans_named(exporter, "handler")
    for name, error in (("async", "ValueError"), ("sync", "KeyError")):
        span = only(exporter, name)
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == error
        assert (span.attributes or {})["fastapi_tasks.task.outcome"] == "failed"
        (event,) = span.events
        assert event.name == "exception"
        assert (event.attributes or {})["exception.type"] == error
        assert [parent_of(h) for h in handlers].count(span.context.span_id) == 1  # nested


class ServerSpan:
    """A pure ASGI middleware opening one server span per request."""

    def __init__(self, app: Any, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.tracer.start_as_current_span(
            "GET", kind=trace.SpanKind.SERVER, attributes={"url.path": scope["path"]}
        ):
            await self.app(scope, receive, send)


def native_telemetry_app(provider: TracerProvider) -> FastAPI:
    """An app whose server spans come from FastAPI's own telemetry (recent FastAPI)."""
    if "telemetry" not in inspect.signature(FastAPI).parameters:
        pytest.skip("this FastAPI has no native telemetry (FastAPI(telemetry=...))")
    return FastAPI(telemetry={"tracer_provider": provider})  # type: ignore[call-arg,unused-ignore]


async def test_each_attempt_of_a_retried_task_is_a_span_of_its_own(
    make_app: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = make_app()
    instrument(app, tracer_provider=provider)
    tracer = provider.get_tracer("test")
    calls = {"async": 0, "sync": 0}

    async def flaky() -> None:
        calls["async"] += 1
        with tracer.start_as_current_span("inside-async"):
            pass
        if calls["async"] < 3:
            raise ConnectionError("try again")

    def flaky_sync() -> None:
        calls["sync"] += 1
        with tracer.start_as_current_span("inside-sync"):  # in a worker thread
            pass
        if calls["sync"] < 2:
            raise ConnectionError("try again")

    @app.post("/")
    async def endpoint(tasks: Tasks) -> None:
        with tracer.start_as_current_span("request"):
            retried = tasks.task(retry=Retry(attempts=3, backoff=0, jitter=False))
            retried.task(name="async").schedule(flaky)
            retried.task(name="sync").schedule(flaky_sync)
            tasks.task(name="slow", timeout=0.01).schedule(anyio.sleep_forever)

    async with serve(app) as client:
        await client.post("/")
        await wait_for_tasks(app)
    request = only(exporter, "request")
    for name, outcomes in (
        ("async", ["failed", "failed", "succeeded"]),
        ("sync", ["failed", "succeeded"]),
    ):
        spans = sorted(
            spans_named(exporter, name),
            key=lambda span: (span.attributes or {})["fastapi_tasks.task.attempt"],
        )
        assert [(s.attributes or {})["fastapi_tasks.task.outcome"] for s in spans] == outcomes
        assert [(s.attributes or {})["fastapi_tasks.task.attempt"] for s in spans] == list(
            range(1, len(outcomes) + 1)
        )
        assert all(parent_of(span) == request.context.span_id for span in spans)  # siblings
        assert [s.status.status_code for s in spans[:-1]] == [StatusCode.ERROR] * (len(spans) - 1)
        inner = spans_named(exporter, f"inside-{name}")
        assert sorted(parent_of(span) or 0 for span in inner) == sorted(
            span.context.span_id for span in spans
        )
    slow = only(exporter, "slow")
    assert (slow.attributes or {})["fastapi_tasks.task.outcome"] == "failed"
    assert slow.status.description == "FastAPITasksTimeoutError"


@pytest.mark.parametrize("server_spans", ["middleware", "fastapi-telemetry"])
async def test_concurrent_requests_keep_their_tasks_in_their_own_traces(
    provider: TracerProvider, exporter: InMemorySpanExporter, server_spans: str
) -> None:
    if server_spans == "middleware":
        app = FastAPI()
        app.add_middleware(ServerSpan, tracer=provider.get_tracer("test"))
    else:
        app = native_telemetry_app(provider)
    add_tasks(app)
    instrument(app, tracer_provider=provider)
    arrived = 0
    all_in = anyio.Event()
    requests = 25

    async def step(request_id: int) -> None:
        await anyio.sleep(0)

    def sync_step(request_id: int) -> None:
        pass

    @app.get("/r/{request_id}")
    async def endpoint(request_id: int, tasks: Tasks) -> None:
        nonlocal arrived
        arrived += 1
        if arrived == requests:
            all_in.set()
        with anyio.fail_after(10):
            await all_in.wait()  # every request is in flight at once
        tasks.task(name=f"async-{request_id}").schedule(step, request_id)
        tasks.task(name=f"sync-{request_id}").schedule(sync_step, request_id)
        tasks.after_response.task(name=f"after-{request_id}").schedule(step, request_id)

    async with serve(app) as client:
        async with anyio.create_task_group() as tg:
            for request_id in range(requests):
                tg.start_soon(client.get, f"/r/{request_id}")
        await wait_for_tasks(app)
    spans = exporter.get_finished_spans()
    servers = {
        (span.attributes or {})["url.path"]: span
        for span in spans
        if span.kind is trace.SpanKind.SERVER
    }
    assert len(servers) == requests
    by_id = {span.context.span_id: span for span in spans}
    for request_id in range(requests):
        server = servers[f"/r/{request_id}"]
        for prefix in ("async", "sync", "after"):
            span = only(exporter, f"{prefix}-{request_id}")
            assert span.context.trace_id == server.context.trace_id
            parent = by_id[parent_of(span) or 0]  # the server span, or FastAPI's endpoint span
            assert parent is server or parent_of(parent) == server.context.span_id
    assert len({server.context.trace_id for server in servers.values()}) == requests


async def test_runs_cancelled_at_shutdown_are_traced_and_unstarted_ones_are_not(
    make_app: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = make_app(thread_limit=1)
    instrument(app, tracer_provider=provider)
    never = threading.Event()

    def cooperative() -> None:
        while not never.wait(0.005):
            anyio.from_thread.check_cancelled()  # raises once shutdown cancels the task

    def never_starts() -> None:
        pass  # pragma: no cover

    async def shielded() -> None:
        while get_tasks(app).stats().state != "draining":
            await anyio.sleep(0.001)

    async with serve(app):
        scheduler = get_tasks(app)
        running = scheduler.task(name="running").schedule(anyio.sleep_forever)
        busy = scheduler.task(name="shielded", shield=True).schedule(shielded)
        blocker = scheduler.task(name="blocker").schedule(cooperative)
        queued = scheduler.task(name="queued").schedule(never_starts)
        for task in (running, busy, blocker):
            await task.started.wait()
    assert queued.state is TaskState.CANCELLED and not spans_named(exporter, "queued")
    for name, outcome in (
        ("running", "cancelled"),
        ("shielded", "succeeded"),
        ("blocker", "cancelled"),
    ):
        span = only(exporter, name)
        assert (span.attributes or {})["fastapi_tasks.task.outcome"] == outcome
        assert span.status.status_code is StatusCode.UNSET


async def test_periodic_runs_start_traces_of_their_own_linked_to_every(
    make_app: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = make_app()
    instrument(app, tracer_provider=provider)
    tracer = provider.get_tracer("test")
    runs = 0
    ran_twice = anyio.Event()

    async def beat() -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            ran_twice.set()

    async with serve(app):
        with tracer.start_as_current_span("setup"):
            periodic = get_tasks(app).every(0.01, beat, name="beat")
        with anyio.fail_after(10):
            await ran_twice.wait()
        periodic.cancel()
        await wait_for_tasks(app)
    setup = only(exporter, "setup")
    beats = spans_named(exporter, "beat")
    assert len(beats) >= 2
    assert len({span.context.trace_id for span in beats}) == len(beats)
    for span in beats:
        assert span.parent is None
        assert span.context.trace_id != setup.context.trace_id
        assert [link.context.span_id for link in span.links] == [setup.context.span_id]


async def test_instrument_checks_its_arguments_and_refuses_a_second_call(
    provider: TracerProvider,
) -> None:
    with pytest.raises(FastAPITasksUninitializedAppError, match="call add_tasks"):
        instrument(FastAPI())
    app = FastAPI()
    add_tasks(app)
    with pytest.raises(TypeError, match="TracerProvider or None, not str"):
        instrument(app, tracer_provider="console")  # type: ignore[arg-type]
    assert isinstance(instrument(app, tracer_provider=provider), TaskTracer)
    with pytest.raises(FastAPITasksAlreadyAddedError, match="already called"):
        instrument(app, tracer_provider=provider)


@pytest.mark.parametrize("tracing_first", [True, False], ids=["tracing-first", "metrics-first"])
async def test_tracing_and_prometheus_both_see_every_task(
    make_app: Any,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    tracing_first: bool,
) -> None:
    app = make_app()
    registry = CollectorRegistry()
    if tracing_first:
        instrument(app, tracer_provider=provider)
        task_metrics.instrument(app, registry=registry)
    else:
        task_metrics.instrument(app, registry=registry)
        instrument(app, tracer_provider=provider)
    with pytest.raises(FastAPITasksAlreadyAddedError, match="already called"):
        task_metrics.instrument(app, registry=CollectorRegistry())
    with pytest.raises(FastAPITasksAlreadyAddedError, match="already called"):
        instrument(app, tracer_provider=provider)

    async def job() -> None:
        pass

    async with serve(app):
        for _ in range(3):
            get_tasks(app).task(name="job").schedule(job)
        await wait_for_tasks(app)
    assert len(spans_named(exporter, "job")) == 3
    assert registry.get_sample_value("fastapi_tasks_scheduled_total") == 3


async def test_the_global_tracer_provider_is_used_by_default(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    app = make_app()
    instrument(app)

    async def job() -> None:
        pass

    async with serve(app):
        get_tasks(app).task(name="global").schedule(job)
        await wait_for_tasks(app)
    provider.shutdown()
    assert [span.name for span in exporter.get_finished_spans()] == ["global"]


async def test_without_instrument_nothing_is_traced_and_no_observer_runs(
    make_app: Any, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = make_app()
    tracer = provider.get_tracer("test")

    async def job() -> None:
        pass

    async with serve(app):
        with tracer.start_as_current_span("request"):
            get_tasks(app).schedule(job)
        await wait_for_tasks(app)
        assert get_tasks(app)._runtime.observer is None
    assert [span.name for span in exporter.get_finished_spans()] == ["request"]
