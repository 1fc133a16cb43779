"""Durable hand-off: ``tasks.durable`` enqueues jobs on an external queue (taskiq).

The core knows nothing about any queue library: a backend (``fastapi_tasks.taskiq``) registers
itself on the runtime, and :class:`DurableScheduler` turns each ``schedule()`` into an ordinary,
*shielded* in-process task whose only work is the enqueue. So the timing modes, the accounting,
the error handling and the shutdown rules all apply to the enqueue unchanged: an after-response
job is enqueued after the response is sent and never if the endpoint raised; an enqueue in
flight at shutdown completes; a broker that is down fails the enqueue task (logged, ``on_error``
called) and never the response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, Protocol

from ._config import ErrorHandler, TaskConfig
from ._task import Task
from .errors import FastAPITasksUninitializedAppError

__all__ = ["DurableBackend", "DurableScheduler"]

P = ParamSpec("P")


class DurableBackend(Protocol):
    """What a queue integration provides to the runtime."""

    def enqueuer(self, job: object) -> tuple[Callable[..., Awaitable[None]], str]:
        """Validate ``job`` and return a coroutine function that enqueues one call of it, and
        a name for the enqueue task.

        :raises TypeError: if ``job`` cannot be enqueued by this backend.
        """
        ...


class _Scheduler(Protocol):
    """What :class:`DurableScheduler` needs of the in-process scheduler it wraps."""

    @property
    def config(self) -> TaskConfig: ...
    @property
    def _durable_backend(self) -> DurableBackend | None: ...
    @property
    def after_route(self) -> _Scheduler: ...
    @property
    def after_response(self) -> _Scheduler: ...
    def _place(self, task: Task[..., Any]) -> None: ...
    def task(
        self, *, name: str | None = ..., on_error: ErrorHandler | None = ...
    ) -> _Scheduler: ...


class DurableScheduler:
    """``tasks.durable``: the call sites of in-process scheduling, but the job goes to a queue.

    Every form (``schedule``, ``task(...)``, ``after_route``, ``after_response``) behaves like
    the in-process one, except that what runs in this process is a shielded enqueue task named
    ``"enqueue <job name>"`` (a ``name=`` you set wins).
    """

    __slots__ = ("_inner",)

    def __init__(self, inner: _Scheduler) -> None:
        self._inner = inner

    def schedule(
        self, job: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> Task[P, None]:
        """Enqueue ``job(*args, **kwargs)`` at this scheduler's moment; return the enqueue task.

        :raises FastAPITasksUninitializedAppError: if no durable broker was registered for the app.
        :raises TypeError: if ``job`` is not a task the registered broker knows.
        :raises FastAPITasksShutdownError: if the application is shutting down.
        """
        inner = self._inner
        backend = inner._durable_backend
        if backend is None:
            raise FastAPITasksUninitializedAppError(
                "tasks.durable needs a queue: call "
                "fastapi_tasks.taskiq.add_durable_broker(app, broker) when you create the app"
            )
        enqueue, name = backend.enqueuer(job)
        config = inner.config.merge(TaskConfig(name=inner.config.name or name, shield=True))
        task: Task[P, None] = Task(enqueue, args, kwargs, config)
        inner._place(task)
        return task

    def task(
        self,
        *,
        name: str | None = None,
        on_error: ErrorHandler | None = None,
    ) -> DurableScheduler:
        """Settings for the enqueue task (it is always shielded)."""
        return DurableScheduler(self._inner.task(name=name, on_error=on_error))

    @property
    def after_route(self) -> DurableScheduler:
        """Enqueue once the endpoint has returned, before the response is sent."""
        return DurableScheduler(self._inner.after_route)

    @property
    def after_response(self) -> DurableScheduler:
        """Enqueue once the response has been sent; never if the endpoint raised."""
        return DurableScheduler(self._inner.after_response)
