"""The scheduling API that endpoints see: ``schedule``, ``task(...)``, ``after_route``,
``after_response``, plus the per-request queues behind the two deferred modes."""

from __future__ import annotations

import datetime
import enum
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from ._config import ErrorHandler, TaskConfig
from ._durable import DurableScheduler
from ._log import logger
from ._periodic import PeriodicTask, start_periodic
from ._retry import Retry
from ._runtime import TaskRuntime
from ._task import Task, TaskState
from .errors import FastAPITasksNoRequestError, FastAPITasksShutdownError

if TYPE_CHECKING:
    from ._durable import DurableBackend
    from ._stats import TaskStats

__all__ = [
    "ErrorResponse",
    "Mode",
    "RequestQueues",
    "ResponseIncomplete",
    "TaskScheduler",
    "deferred_timing",
]

P = ParamSpec("P")
T = TypeVar("T")


class Mode(enum.IntEnum):
    NOW = 0
    AFTER_ROUTE = 1
    AFTER_RESPONSE = 2

    @property
    def label(self) -> str:
        return ("now", "after_route", "after_response")[self]


_NOW = Mode.NOW  # a global lookup on the schedule() hot path
_PENDING = TaskState.PENDING
_MODE_LABEL = {Mode.AFTER_ROUTE: "after-route", Mode.AFTER_RESPONSE: "after-response"}

#: The timing mode of deferred tasks (``Mode.label``), recorded only while an observer is
#: installed (``fastapi_tasks.opentelemetry`` reads it); other tasks are ``"now"``.
deferred_timing: weakref.WeakKeyDictionary[Task[..., Any], str] = weakref.WeakKeyDictionary()


class RequestQueues:
    """The after-route and after-response tasks of one request (or WebSocket session).

    Created for every request by the request hooks (see ``_request_hooks``), which call
    :meth:`endpoint_returned`, :meth:`response_sent` or :meth:`abort` at the right moments.
    Touched on the event loop thread only (the scheduler hops there from worker threads).
    """

    __slots__ = (
        "_scheduler",
        "after_response",
        "after_route",
        "raised",
        "response_done",
        "route_done",
        "runtime",
    )

    def __init__(self, runtime: TaskRuntime) -> None:
        self.runtime = runtime
        self.after_route: list[Task[..., Any]] | None = None
        self.after_response: list[Task[..., Any]] | None = None
        #: Set by the exception-handler marker when the endpoint (or a dependency) raised.
        self.raised: BaseException | None = None
        self.route_done = False
        self.response_done = False
        self._scheduler: TaskScheduler | None = None

    @property
    def scheduler(self) -> TaskScheduler:
        """The request's scheduler (one per request, shared by all its dependencies)."""
        if self._scheduler is None:
            runtime = self.runtime
            self._scheduler = TaskScheduler._create(runtime, runtime.config, self)
        return self._scheduler

    def defer(self, mode: Mode, task: Task[..., Any]) -> None:
        """Queue ``task`` for its moment. Admission (shutdown) is checked now; ``max_pending``
        is not: a deferred task waits for its moment, not for capacity."""
        runtime = self.runtime
        runtime.check_admission()
        if runtime.ledger.observer is not None:  # metrics or tracing: record the timing mode
            deferred_timing[task] = mode.label
        if self.route_done if mode is Mode.AFTER_ROUTE else self.response_done:
            if self.raised is None:
                runtime.submit(task, deferred=True)  # its moment has passed: start it now
            else:
                self._queue(mode, task)
                self._discard(mode, self.raised)
            return
        self._queue(mode, task)

    def _queue(self, mode: Mode, task: Task[..., Any]) -> None:
        self.runtime.counters.deferred += 1
        if mode is Mode.AFTER_ROUTE:
            if self.after_route is None:
                self.after_route = []
            self.after_route.append(task)
        else:
            if self.after_response is None:
                self.after_response = []
            self.after_response.append(task)

    def endpoint_returned(self) -> None:
        """The endpoint returned and the response is about to be sent."""
        self.route_done = True
        if self.after_route is not None:
            self._release(Mode.AFTER_ROUTE)

    def response_sent(self) -> None:
        """The last chunk of the response went to the server (or the WebSocket ended)."""
        self.route_done = self.response_done = True
        if self.after_route is not None:
            self._release(Mode.AFTER_ROUTE)
        if self.after_response is not None:
            self._release(Mode.AFTER_RESPONSE)

    def abort(self, reason: BaseException) -> None:
        """The endpoint raised (or the response never completed): drop what is queued."""
        self.raised = self.raised or reason
        self.route_done = self.response_done = True
        if self.after_route is not None:
            self._discard(Mode.AFTER_ROUTE, reason)
        if self.after_response is not None:
            self._discard(Mode.AFTER_RESPONSE, reason)

    def _take(self, mode: Mode) -> list[Task[..., Any]]:
        if mode is Mode.AFTER_ROUTE:
            tasks, self.after_route = self.after_route or [], None
        else:
            tasks, self.after_response = self.after_response or [], None
        self.runtime.counters.deferred -= len(tasks)
        return tasks

    def _release(self, mode: Mode) -> None:
        runtime = self.runtime
        tasks = self._take(mode)
        if not runtime.accepting:  # shutdown began before their moment: they never start
            self._drop(mode, tasks, FastAPITasksShutdownError())
            return
        for task in tasks:
            if task.state is _PENDING:
                runtime.submit(task, deferred=True)
            else:  # task.cancel() before its moment
                runtime.count_refused("discarded")

    def _discard(self, mode: Mode, reason: BaseException) -> None:
        self._drop(mode, self._take(mode), reason)

    def _drop(self, mode: Mode, tasks: list[Task[..., Any]], reason: BaseException) -> None:
        """Count ``tasks`` as discarded: they end ``cancelled`` without ever starting."""
        if not tasks:
            return
        self.runtime.count_refused("discarded", len(tasks))
        for task in tasks:
            task._mark_finished(TaskState.CANCELLED)
        logger.warning(
            "fastapi-tasks: discarded %d %s task(s) because %s: %s",
            len(tasks),
            _MODE_LABEL[mode],
            _describe_reason(reason),
            ", ".join(task.name for task in tasks),
        )


def _describe_reason(reason: BaseException) -> str:
    if isinstance(reason, (ResponseIncomplete, ErrorResponse)):
        return str(reason)
    if isinstance(reason, FastAPITasksShutdownError):
        return "the application began shutting down before their moment"
    return f"the endpoint raised {type(reason).__name__}"


class ResponseIncomplete(Exception):
    """Reason recorded when the app returned without finishing the response."""

    def __init__(self) -> None:
        super().__init__("the response was not completed (did the client disconnect?)")


class ErrorResponse(Exception):
    """Reason recorded when the app answered with an error (HTTP status >= 400, or a WebSocket
    closed with a code other than 1000/1001) without an exception leaving it."""

    def __init__(self, what: str) -> None:
        super().__init__(f"the app answered with {what}")


class TaskScheduler:
    """Schedules tasks. This is what a ``tasks: Tasks`` parameter receives.

    ``tasks.schedule(...)`` starts a task now; ``tasks.after_route.schedule(...)`` and
    ``tasks.after_response.schedule(...)`` queue it for later in the request;
    ``tasks.task(name=..., shield=..., on_error=...)`` returns a scheduler with those settings
    merged over the global :class:`TaskConfig`. Every form returns the :class:`Task`.
    """

    __slots__ = ("_after_response", "_after_route", "_config", "_mode", "_queues", "_runtime")

    _runtime: TaskRuntime
    _config: TaskConfig
    _queues: RequestQueues | None
    _mode: Mode
    _after_route: TaskScheduler | None
    _after_response: TaskScheduler | None

    def __init__(self) -> None:
        """Not created by hand: declare ``tasks: Tasks`` or call ``get_tasks(app)``.

        :raises TypeError: always.
        """
        raise TypeError(
            "TaskScheduler is not created directly: declare 'tasks: Tasks' in an endpoint or "
            "dependency, or call get_tasks(app)"
        )

    @classmethod
    def _create(
        cls,
        runtime: TaskRuntime,
        config: TaskConfig,
        queues: RequestQueues | None = None,
        mode: Mode = Mode.NOW,
    ) -> TaskScheduler:
        self = object.__new__(cls)
        self._runtime = runtime
        self._config = config
        self._queues = queues
        self._mode = mode
        self._after_route = None
        self._after_response = None
        return self

    @property
    def config(self) -> TaskConfig:
        """The settings tasks scheduled here get (global config merged with ``task(...)``)."""
        return self._config

    @overload
    def schedule(
        self, func: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Task[P, T]: ...

    @overload
    def schedule(
        self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Task[P, T]: ...

    def schedule(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Task[..., Any]:
        """Schedule ``func(*args, **kwargs)`` and return its :class:`Task` without waiting.

        On a request's scheduler the task starts now, concurrently with the endpoint; on
        ``after_route`` it is queued and started once the endpoint function has returned,
        before the response is sent; on ``after_response`` it is queued and started once the
        response has been sent (for a streaming response, after its last chunk). Queued tasks
        are dropped if the endpoint raises. ``async def`` functions run on the event loop; plain
        functions run in the runtime's own thread pool. Safe to call from worker threads.

        :raises TypeError: if ``func`` is not a plain or coroutine function, or if the
            arguments do not fit its signature.
        :raises FastAPITasksShutdownError: if the application is shutting down.
        :raises FastAPITasksQueueFullError: for a plain function, if ``max_pending`` sync tasks
            are already waiting for a thread.
        :raises FastAPITasksUninitializedAppError: if the app's lifespan is not running.
        """
        task: Task[..., Any] = Task(func, args, kwargs, self._config)
        runtime = self._runtime
        if self._mode is _NOW and runtime.capture is None:  # the common case
            runtime.submit(task)
        else:
            self._place(task)
        return task

    def _place(self, task: Task[..., Any]) -> None:
        runtime = self._runtime
        if runtime.capture is not None:  # fastapi_tasks.testing.capture_tasks() is active
            runtime.capture(task, self._mode.label)
        elif self._mode is _NOW:
            runtime.submit(task)
        else:
            queues = self._queues
            assert queues is not None
            runtime.call_on_loop(queues.defer, self._mode, task)

    def task(
        self,
        *,
        name: str | None = None,
        shield: bool | None = None,
        on_error: ErrorHandler | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        limit: int | None = None,
    ) -> TaskScheduler:
        """A scheduler of the same timing whose tasks get these settings; ``None`` inherits.
        See :class:`TaskConfig` for each setting (``limit`` bounds the tasks of ``name``).

        :raises TypeError: if a setting has the wrong type.
        :raises ValueError: if ``timeout`` or ``limit`` is out of range.
        """
        override = TaskConfig(
            name=name, shield=shield, on_error=on_error, timeout=timeout, retry=retry, limit=limit
        )
        return TaskScheduler._create(
            self._runtime, self._config.merge(override), self._queues, self._mode
        )

    def every(
        self,
        interval: float | datetime.timedelta,
        func: Callable[..., Any],
        /,
        *args: Any,
        name: str | None = None,
        shield: bool | None = None,
        on_error: ErrorHandler | None = None,
        **kwargs: Any,
    ) -> PeriodicTask:
        """Run ``func(*args, **kwargs)`` now and then every ``interval`` seconds until
        :meth:`PeriodicTask.cancel` or shutdown, and return the schedule's handle.

        Each run is an ordinary task (counted in :meth:`stats`), named ``name`` (default: the
        function's name), shielded if ``shield`` and handed to ``on_error`` if it fails; the
        schedule goes on after a failure. A tick that comes while the previous run is still
        going is skipped and counted in ``stats().skipped``. Ticks follow the event loop's
        monotonic clock and do not drift. At shutdown the schedule stops and the run in progress
        is cancelled unless shielded. ``name``, ``shield`` and ``on_error`` left at ``None``
        inherit from this scheduler's settings. Runs happen in every worker process.

        :raises TypeError: if ``interval`` is not a number or a ``timedelta``, ``func`` is not
            a plain or coroutine function, or the arguments do not fit its signature.
        :raises ValueError: if ``interval`` is not a finite number > 0.
        :raises FastAPITasksUninitializedAppError: if the app's lifespan is not running.
        :raises FastAPITasksShutdownError: if the application is shutting down.
        """
        override = TaskConfig(name=name, shield=shield, on_error=on_error)
        scheduler = TaskScheduler._create(self._runtime, self._config.merge(override))
        return start_periodic(self._runtime, scheduler, interval, func, args, kwargs)

    def _deferred(self, mode: Mode) -> TaskScheduler:
        if self._queues is None:
            raise FastAPITasksNoRequestError(
                f"{_MODE_LABEL[mode].replace('-', '_')} scheduling needs a request: use the "
                "Tasks dependency in an endpoint or dependency (outside a request only "
                "schedule() is available)"
            )
        return TaskScheduler._create(self._runtime, self._config, self._queues, mode)

    @property
    def after_route(self) -> TaskScheduler:
        """Tasks scheduled here start after the endpoint function returns, before the
        response is sent (fire-and-forget: the response does not wait for them)."""
        if self._after_route is None:
            self._after_route = self._deferred(Mode.AFTER_ROUTE)
        return self._after_route

    @property
    def after_response(self) -> TaskScheduler:
        """Tasks scheduled here start after the response has been sent."""
        if self._after_response is None:
            self._after_response = self._deferred(Mode.AFTER_RESPONSE)
        return self._after_response

    @property
    def durable(self) -> DurableScheduler:
        """The same scheduler, handing jobs to a durable queue instead of running them here.

        ``tasks.durable.schedule(job, ...)`` enqueues ``job`` on the broker registered with
        ``fastapi_tasks.taskiq.add_durable_broker(app, broker)``; the timing modes apply to
        the enqueue. See :class:`~fastapi_tasks._durable.DurableScheduler`.
        """
        return DurableScheduler(self)

    @property
    def _durable_backend(self) -> DurableBackend | None:
        """The durable queue registered for the app, if any (used by ``tasks.durable``)."""
        return self._runtime.durable

    def stats(self) -> TaskStats:
        """A snapshot of the runtime's counters (see :class:`TaskStats`)."""
        return self._runtime.stats()

    def __repr__(self) -> str:
        mode = "now" if self._mode is Mode.NOW else _MODE_LABEL[self._mode]
        return f"<TaskScheduler mode={mode} config={self._config!r}>"
