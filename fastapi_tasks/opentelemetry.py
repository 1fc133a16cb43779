"""OpenTelemetry tracing for the task runtime (``pip install 'fastapi-tasks[opentelemetry]'``).

Importing ``fastapi_tasks`` never imports ``opentelemetry``; only this module does.

After :func:`instrument`, every task run is a span:

- named after the task (``tasks.task(name=...)`` or the function's dotted name), kind
  ``INTERNAL``;
- a child of the span that was current when the task was scheduled: a task runs in a copy of
  the scheduling code's context, so a request's trace shows the tasks it scheduled, even the
  ones that run after the response was sent (runs of a periodic task start a trace of their own
  instead, linked to the span current at ``every()``);
- current while the task runs, so spans the task makes (HTTP clients, databases) nest under it,
  and so does its ``on_error`` handler;
- with the attributes ``fastapi_tasks.task.name``, ``fastapi_tasks.task.function``,
  ``fastapi_tasks.task.timing`` (``now``, ``after_route``, ``after_response``),
  ``fastapi_tasks.task.kind`` (``async`` or ``sync``), ``fastapi_tasks.task.shielded``,
  ``fastapi_tasks.task.attempt`` (1, then 2... for retries: each attempt is a span of its own),
  ``fastapi_tasks.task.pending_seconds`` (time between admission and start) and
  ``fastapi_tasks.task.outcome`` (``succeeded``, ``failed``, ``cancelled``);
- on failure, the exception recorded as a span event and the status set to ``ERROR``.

Argument values are never recorded. Tasks that end before they start (cancelled while pending
at shutdown) have no span. Without :func:`instrument`, nothing of this runs: the runtime is not
changed at all.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, Literal

import anyio
from fastapi import FastAPI

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError as _missing:  # pragma: no cover - tested in a subprocess without the extra
    raise ImportError(
        "fastapi_tasks.opentelemetry needs the opentelemetry extra: "
        "pip install 'fastapi-tasks[opentelemetry]'"
    ) from _missing

from . import __version__
from ._callables import callable_name
from ._controls import ControlledRun
from ._lifespan import get_runtime
from ._periodic import periodic_runs
from ._scheduler import deferred_timing
from ._stats import add_observer, iter_observers
from ._task import TaskState
from .errors import FastAPITasksAlreadyAddedError

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.trace import Span, Tracer, TracerProvider

    from ._task import Task

__all__ = ["TaskTracer", "instrument"]

_SUCCEEDED = TaskState.SUCCEEDED
_FAILED = TaskState.FAILED


class TaskTracer:
    """Makes the spans of one app's tasks (a runtime observer). Made by :func:`instrument`."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        #: When each live task was admitted (``time.monotonic()``).
        self._admitted: dict[Task[..., Any], float] = {}
        #: The span of each task running now (of its current attempt, with a retry policy).
        self._spans: dict[Task[..., Any], Span] = {}
        #: For controlled tasks (timeout, retry, limit): the token that made the attempt's
        #: span current, detached when the attempt ends so that the next attempt's span is a
        #: sibling, not a child.
        self._tokens: dict[Task[..., Any], Token[otel_context.Context]] = {}

    # -- spans ----------------------------------------------------------------------------------
    def _begin(self, task: Task[..., Any], attempt: int) -> None:
        """Start the span of ``task``'s run and make it current. In the task's context."""
        try:
            parent = None  # the current context: the one the task was scheduled in
            links: list[Link] = []
            if task in periodic_runs:  # a trace per run, linked to the every() call
                scheduled_in = trace.get_current_span().get_span_context()
                if scheduled_in.is_valid:
                    links.append(Link(scheduled_in))
                parent = otel_context.Context()
            admitted = self._admitted.get(task)
            started = task.started_at if task.started_at is not None else time.monotonic()
            span = self.tracer.start_span(
                task.name,
                context=parent,
                kind=SpanKind.INTERNAL,
                links=links,
                attributes={
                    "fastapi_tasks.task.name": task.name,
                    "fastapi_tasks.task.function": callable_name(task.func),
                    "fastapi_tasks.task.timing": deferred_timing.get(task, "now"),
                    "fastapi_tasks.task.kind": "async" if task.is_async else "sync",
                    "fastapi_tasks.task.shielded": task.shielded,
                    "fastapi_tasks.task.attempt": attempt,
                    "fastapi_tasks.task.pending_seconds": (
                        max(0.0, started - admitted) if admitted is not None else 0.0
                    ),
                },
            )
            self._spans[task] = span
            token = otel_context.attach(trace.set_span_in_context(span))
            if isinstance(task._runner, ControlledRun):
                self._tokens[task] = token
        except Exception:  # noqa: BLE001 - tracing must never break a task  # pragma: no cover
            pass

    def _end(self, task: Task[..., Any], outcome: str, error: BaseException | None) -> None:
        span = self._spans.pop(task, None)
        if span is None:
            return
        span.set_attribute("fastapi_tasks.task.outcome", outcome)
        if error is not None and outcome == "failed":
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()

    # -- TaskObserver ---------------------------------------------------------------------------
    def scheduled(self, task: Task[..., Any]) -> None:
        self._admitted[task] = time.monotonic()

    def started(self, task: Task[..., Any]) -> None:
        if isinstance(task._runner, ControlledRun):  # each attempt is traced (see below)
            return
        if task.is_async:  # called in the task's own native task, in its context
            self._begin(task, 1)
        else:  # called by the thread pool's carrier: the thread runs in task.context
            task.context.run(self._begin, task, 1)

    def finished(self, task: Task[..., Any], state: TaskState, was_running: bool) -> None:
        self._admitted.pop(task, None)
        if was_running:
            self._end(task, state.value, task.error)

    def refused(self, outcome: Literal["rejected", "discarded"], count: int) -> None:
        pass

    # -- AttemptObserver (controlled tasks: timeout, retry, limit) --------------------------------
    def attempt_started(self, task: Task[..., Any], attempt: int) -> None:
        self._begin(task, attempt)

    def attempt_finished(
        self, task: Task[..., Any], attempt: int, error: BaseException | None
    ) -> None:
        token = self._tokens.pop(task, None)
        if token is not None:
            with contextlib.suppress(Exception):  # ended in another context: nothing to undo
                otel_context.detach(token)
        if error is None:
            outcome = "succeeded"
        elif isinstance(error, anyio.get_cancelled_exc_class()):
            outcome = "cancelled"
        else:
            outcome = "failed"
        self._end(task, outcome, error)


def instrument(app: FastAPI, tracer_provider: TracerProvider | None = None) -> TaskTracer:
    """Trace the tasks of ``app`` (after ``add_tasks(app)``): one span per task run.

    :param tracer_provider: where the spans go; default: the global tracer provider
        (``opentelemetry.trace.set_tracer_provider``), looked up when each span starts.
    :raises FastAPITasksUninitializedAppError: if ``add_tasks(app)`` was not called.
    :raises FastAPITasksAlreadyAddedError: if ``app`` is instrumented already.
    :raises TypeError: if ``tracer_provider`` is not an OpenTelemetry ``TracerProvider``.
    """
    runtime = get_runtime(app)
    if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
        raise TypeError(
            "tracer_provider must be an opentelemetry.trace.TracerProvider or None, not "
            f"{type(tracer_provider).__name__}"
        )
    if any(isinstance(observer, TaskTracer) for observer in iter_observers(runtime.observer)):
        raise FastAPITasksAlreadyAddedError(
            "fastapi_tasks.opentelemetry.instrument() was already called for this app; call it "
            "once per application"
        )
    tracer = trace.get_tracer("fastapi_tasks", __version__, tracer_provider=tracer_provider)
    task_tracer = TaskTracer(tracer)
    runtime.observer = add_observer(runtime.observer, task_tracer)
    runtime.controls.attempt_observer = task_tracer
    return task_tracer
