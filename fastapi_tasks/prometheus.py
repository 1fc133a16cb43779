"""Prometheus metrics for the task runtime (``pip install 'fastapi-tasks[prometheus]'``).

Importing ``fastapi_tasks`` never imports ``prometheus_client``; only this module does.

:func:`instrument` subscribes to the runtime's accounting events and keeps these metrics:

- ``fastapi_tasks_scheduled_total`` (counter): tasks admitted to run;
- ``fastapi_tasks_finished_total{outcome}`` (counter): ``succeeded``, ``failed``, ``cancelled``;
- ``fastapi_tasks_abandoned_total`` (counter): of the cancelled, tasks given up at the shutdown
  deadline;
- ``fastapi_tasks_enqueued_total`` and ``fastapi_tasks_enqueue_failed_total`` (counters):
  durable jobs handed to the queue by ``tasks.durable``, and enqueues that failed;
- ``fastapi_tasks_refused_total{outcome}`` (counter): ``rejected`` at ``schedule()``, or
  ``discarded`` with a request that failed;
- ``fastapi_tasks_retried_total`` (counter): extra attempts of tasks with a ``retry`` policy;
- ``fastapi_tasks_skipped_total`` (counter): ticks of periodic tasks skipped because the
  previous run was still going (or the loop was late);
- ``fastapi_tasks_pending`` and ``fastapi_tasks_running`` (gauges);
- ``fastapi_tasks_task_duration_seconds{task,outcome}`` (histogram): how long tasks ran.

The ``task`` label is the task's name; to keep the number of series bounded, names beyond the
first ``max_task_names`` distinct ones are reported as ``"other"``. Name your tasks
(``tasks.task(name=...)``) rather than letting them default to function names if you schedule
lambdas or many small functions.

Several worker processes (``uvicorn --workers N``, gunicorn): set the environment variable
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before the workers start. prometheus-client
then keeps every worker's values in files there, the gauges are summed over live processes
(``multiprocess_mode="livesum"``), and :func:`metrics_app` serves the aggregate from whichever
worker answers the scrape.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Literal, cast

from fastapi import FastAPI
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_asgi_app,
)
from prometheus_client import multiprocess as _multiprocess_collector
from starlette.routing import Route

from ._lifespan import get_runtime
from ._stats import add_observer, iter_observers
from .errors import FastAPITasksAlreadyAddedError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from ._task import Task, TaskState

__all__ = ["TaskMetrics", "add_metrics_route", "instrument", "metrics_app"]

_OTHER = "other"


class TaskMetrics:
    """The metrics of one app's task runtime, as returned by :func:`instrument`."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = REGISTRY,
        namespace: str = "fastapi_tasks",
        max_task_names: int = 50,
        buckets: tuple[float, ...] = Histogram.DEFAULT_BUCKETS,
    ) -> None:
        if isinstance(max_task_names, bool) or not isinstance(max_task_names, int):
            raise TypeError("max_task_names must be an int")
        if max_task_names < 1:
            raise ValueError(f"max_task_names must be >= 1, got {max_task_names}")
        self.max_task_names: int = max_task_names
        self._names: set[str] = set()
        kwargs: dict[str, Any] = {"namespace": namespace, "registry": registry}
        self.scheduled_total: Counter = Counter("scheduled", "Tasks admitted to run.", **kwargs)
        self.finished_total: Counter = Counter(
            "finished", "Tasks that finished, by outcome.", ["outcome"], **kwargs
        )
        self.abandoned_total: Counter = Counter(
            "abandoned",
            "Of the cancelled tasks: given up at the shutdown deadline.",
            **kwargs,
        )
        self.enqueued_total: Counter = Counter(
            "enqueued", "Durable jobs handed to the queue (tasks.durable).", **kwargs
        )
        self.enqueue_failed_total: Counter = Counter(
            "enqueue_failed", "Durable enqueues that failed (broker down...).", **kwargs
        )
        self.refused_total: Counter = Counter(
            "refused",
            "Tasks refused at schedule() (rejected) or dropped with their request (discarded).",
            ["outcome"],
            **kwargs,
        )
        self.retried_total: Counter = Counter(
            "retried", "Extra attempts of tasks with a retry policy.", **kwargs
        )
        self.skipped_total: Counter = Counter(
            "skipped", "Ticks of periodic tasks skipped (previous run still going).", **kwargs
        )
        self.pending: Gauge = Gauge(
            "pending", "Tasks waiting to start.", multiprocess_mode="livesum", **kwargs
        )
        self.running: Gauge = Gauge(
            "running", "Tasks running now.", multiprocess_mode="livesum", **kwargs
        )
        self.duration: Histogram = Histogram(
            "task_duration_seconds",
            "How long tasks ran, by task name and outcome.",
            ["task", "outcome"],
            buckets=buckets,
            **kwargs,
        )

    def _label(self, name: str) -> str:
        if name in self._names:
            return name
        if len(self._names) < self.max_task_names:
            self._names.add(name)
            return name
        return _OTHER

    # -- TaskObserver ---------------------------------------------------------------------------
    def scheduled(self, task: Task[..., Any]) -> None:
        self.scheduled_total.inc()
        self.pending.inc()

    def started(self, task: Task[..., Any]) -> None:
        self.pending.dec()
        self.running.inc()

    def finished(self, task: Task[..., Any], state: TaskState, was_running: bool) -> None:
        outcome = state.value
        self.finished_total.labels(outcome).inc()
        if task._abandoned_at is not None:  # given up at the shutdown deadline
            self.abandoned_total.inc()
        if was_running:
            self.running.dec()
            if task.started_at is not None:
                elapsed = time.monotonic() - task.started_at
                self.duration.labels(self._label(task.name), outcome).observe(elapsed)
        else:
            self.pending.dec()

    def enqueue_done(self, ok: bool) -> None:
        """A durable enqueue finished (``ok``) or failed; called by ``fastapi_tasks.taskiq``."""
        (self.enqueued_total if ok else self.enqueue_failed_total).inc()

    def refused(self, outcome: Literal["rejected", "discarded"], count: int) -> None:
        self.refused_total.labels(outcome).inc(count)

    def retried(self, task: Task[..., Any]) -> None:
        """A task with a ``retry`` policy is about to make another attempt."""
        self.retried_total.inc()

    def skipped(self, count: int) -> None:
        """``count`` ticks of a periodic task were skipped."""
        self.skipped_total.inc(count)


def instrument(
    app: FastAPI,
    *,
    registry: CollectorRegistry | None = REGISTRY,
    namespace: str = "fastapi_tasks",
    max_task_names: int = 50,
    buckets: tuple[float, ...] = Histogram.DEFAULT_BUCKETS,
) -> TaskMetrics:
    """Export the task runtime of ``app`` (after ``add_tasks(app)``) as Prometheus metrics.

    :raises FastAPITasksUninitializedAppError: if ``add_tasks(app)`` was not called.
    :raises FastAPITasksAlreadyAddedError: if ``app`` is instrumented already (metric names
        would collide).
    :raises ValueError: if ``max_task_names`` is below 1.
    """
    runtime = get_runtime(app)
    if any(isinstance(observer, TaskMetrics) for observer in iter_observers(runtime.observer)):
        raise FastAPITasksAlreadyAddedError(
            "instrument() was already called for this app; call it once per application"
        )
    metrics = TaskMetrics(
        registry=registry, namespace=namespace, max_task_names=max_task_names, buckets=buckets
    )
    runtime.observer = add_observer(runtime.observer, metrics)
    return metrics


class _MetricsApp:
    """An ASGI app object (not a function), so that ``app.add_route()`` serves it as is."""

    __slots__ = ("_app",)

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def metrics_app(registry: CollectorRegistry | None = None) -> ASGIApp:
    """An ASGI app serving the metrics. Add it as a route, which answers ``GET /metrics``
    without a redirect: ``app.add_route("/metrics", metrics_app(), include_in_schema=False)``
    (``app.mount("/metrics", ...)`` works too, but answers ``/metrics`` with a 307 redirect to
    ``/metrics/``).

    Built on ``prometheus_client.make_asgi_app``: it honours the scraper's ``Accept`` header
    (Prometheus text or OpenMetrics) and ``Accept-Encoding: gzip``.

    With ``PROMETHEUS_MULTIPROC_DIR`` set and no ``registry`` given, it aggregates all worker
    processes (prometheus-client's ``MultiProcessCollector``); otherwise it serves ``registry``
    (default: the global one).
    """
    if registry is None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            _multiprocess_collector.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = REGISTRY
    return _MetricsApp(cast("ASGIApp", make_asgi_app(registry)))


def add_metrics_route(
    app: FastAPI, path: str = "/metrics", *, registry: CollectorRegistry | None = None
) -> None:
    """Serve :func:`metrics_app` at ``path`` (``GET /metrics``: no redirect, not in the OpenAPI
    schema). Same ``registry`` rule as :func:`metrics_app`.

    :raises ValueError: if ``path`` does not start with ``/``.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"path must start with '/', got {path!r}")
    app.router.routes.append(Route(path, metrics_app(registry), include_in_schema=False))
