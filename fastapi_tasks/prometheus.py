"""Prometheus metrics for the task runtime (``pip install 'fastapi-tasks[prometheus]'``).

Importing ``fastapi_tasks`` never imports ``prometheus_client``; only this module does.

:func:`instrument` subscribes to the runtime's accounting events and keeps these metrics:

- ``fastapi_tasks_scheduled_total`` (counter): tasks admitted to run;
- ``fastapi_tasks_finished_total{outcome}`` (counter): ``succeeded``, ``failed``, ``cancelled``;
- ``fastapi_tasks_refused_total{outcome}`` (counter): ``rejected`` at ``schedule()``, or
  ``discarded`` with a request that failed;
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
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess_collector

from ._lifespan import get_runtime

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._task import Task, TaskState

__all__ = ["TaskMetrics", "instrument", "metrics_app"]

OTHER = "other"


class TaskMetrics:
    """The metrics of one runtime; a :class:`~fastapi_tasks._stats.TaskObserver`."""

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
        self.max_task_names = max_task_names
        self._names: set[str] = set()
        kwargs: dict[str, Any] = {"namespace": namespace, "registry": registry}
        self.scheduled_total = Counter("scheduled", "Tasks admitted to run.", **kwargs)
        self.finished_total = Counter(
            "finished", "Tasks that finished, by outcome.", ["outcome"], **kwargs
        )
        self.refused_total = Counter(
            "refused",
            "Tasks refused at schedule() (rejected) or dropped with their request (discarded).",
            ["outcome"],
            **kwargs,
        )
        self.pending = Gauge(
            "pending", "Tasks waiting to start.", multiprocess_mode="livesum", **kwargs
        )
        self.running = Gauge("running", "Tasks running now.", multiprocess_mode="livesum", **kwargs)
        self.duration = Histogram(
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
        return OTHER

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
        if was_running:
            self.running.dec()
            if task.started_at is not None:
                elapsed = time.monotonic() - task.started_at
                self.duration.labels(self._label(task.name), outcome).observe(elapsed)
        else:
            self.pending.dec()

    def refused(self, outcome: Literal["rejected", "discarded"], count: int) -> None:
        self.refused_total.labels(outcome).inc(count)


def instrument(
    app: Any,
    *,
    registry: CollectorRegistry | None = REGISTRY,
    namespace: str = "fastapi_tasks",
    max_task_names: int = 50,
    buckets: tuple[float, ...] = Histogram.DEFAULT_BUCKETS,
) -> TaskMetrics:
    """Export the task runtime of ``app`` (after ``add_tasks(app)``) as Prometheus metrics.

    :raises FastAPITasksUninitializedAppError: if ``add_tasks(app)`` was not called.
    :raises ValueError: if ``app`` is instrumented already (metric names would collide).
    """
    runtime = get_runtime(app)
    if runtime.observer is not None:
        raise ValueError("this app's task runtime is already instrumented")
    metrics = TaskMetrics(
        registry=registry, namespace=namespace, max_task_names=max_task_names, buckets=buckets
    )
    runtime.observer = metrics
    return metrics


def metrics_app(
    registry: CollectorRegistry | None = None,
) -> Callable[[Any, Any, Any], Awaitable[None]]:
    """A tiny ASGI app serving the metrics; mount it with ``app.mount("/metrics", ...)``.

    With ``PROMETHEUS_MULTIPROC_DIR`` set and no ``registry`` given, it aggregates all worker
    processes; otherwise it serves ``registry`` (default: the global one).
    """

    async def serve(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        source = registry
        if source is None:
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                source = CollectorRegistry()
                _multiprocess_collector.MultiProcessCollector(source)  # type: ignore[no-untyped-call]
            else:
                source = REGISTRY
        body = generate_latest(source)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return serve
