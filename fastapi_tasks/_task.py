"""The :class:`Task` handle: what was scheduled, with which settings, and how it ended."""

from __future__ import annotations

import contextvars
import enum
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast

import anyio
import anyio.to_thread

from ._callables import callable_name, inspect_call
from ._config import TaskConfig
from .errors import (
    FastAPITasksCancelledError,
    FastAPITasksNotFinishedError,
    FastAPITasksTimeoutError,
)

if TYPE_CHECKING:
    from anyio import CapacityLimiter

    from ._backend import Backend, Canceller

__all__ = ["Task", "TaskState"]

P = ParamSpec("P")
T = TypeVar("T")


class TaskState(str, enum.Enum):
    """Where a task is in its life. The last three are final."""

    PENDING = "pending"
    """Scheduled (or deferred to after the route/response) and not started yet."""
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    """Cancelled (at shutdown, or before it started), discarded with its request, or given up
    at the shutdown deadline."""


_FINAL = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})
# Module constants for the hot path (``Task()`` runs on every ``schedule()``).
_PENDING = TaskState.PENDING
_copy_context = contextvars.copy_context


class Task(Generic[P, T]):
    """A scheduled call of ``func(*args, **kwargs)``.

    Returned by every ``schedule()``. Its :attr:`state` moves from ``pending`` to ``running``
    to one of ``succeeded``, ``failed`` or ``cancelled``. ``repr()`` and log lines name the task
    and its function, never its arguments.

    The task runs in its own copy of the :mod:`contextvars` context that was current when it
    was scheduled, like ``asyncio.create_task``: it sees the request's context variables, and
    nothing it sets reaches the scheduling code or other tasks.

    Events (:attr:`started`, :meth:`wait`) are meant for the event loop thread.
    """

    __slots__ = (
        "__weakref__",
        "_abandoned_at",
        "_attempts",
        "_backend",
        "_done",
        "_limiter",
        "_result",
        "_runner",
        "_started",
        "_thread_state",
        "args",
        "config",
        "context",
        "error",
        "func",
        "is_async",
        "kwargs",
        "started_at",
        "state",
    )

    func: Callable[P, T] | Callable[P, Awaitable[T]]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    config: TaskConfig
    #: The copy of the scheduling code's context the function runs in.
    context: contextvars.Context
    #: The exception that made the task fail, or ``None``.
    error: BaseException | None
    state: TaskState
    #: Whether ``func`` is a coroutine function (runs on the event loop) or a plain one (runs
    #: in the runtime's thread pool).
    is_async: bool
    #: ``time.monotonic()`` when the task started, or ``None`` if it has not started.
    started_at: float | None
    # Set only when there is something to record (not in __init__: the short path stays short).
    _result: Any
    _attempts: int

    def __init__(
        self,
        func: Callable[P, T] | Callable[P, Awaitable[T]],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        config: TaskConfig | None = None,
    ) -> None:
        """Create a task handle. Made by ``schedule()``, not by hand.

        :raises TypeError: if ``func`` is not a plain or coroutine function (or an awaitable was
            passed by mistake), or if the arguments do not fit its signature.
        """
        if kwargs is None:
            kwargs = {}
        self.is_async = inspect_call(func, args, kwargs)
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.config = TaskConfig() if config is None else config
        self.context = _copy_context()
        self.state = _PENDING
        self.error = None
        self.started_at = None
        self._runner: Canceller | None = None
        self._backend: Backend | None = None
        self._thread_state = 0
        self._abandoned_at: float | None = None
        self._limiter: CapacityLimiter | None = None
        self._started: anyio.Event | None = None
        self._done: anyio.Event | None = None

    # -- identity -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The configured name, or the function's dotted name."""
        return self.config.name or callable_name(self.func)

    @property
    def shielded(self) -> bool:
        """Whether this task runs to completion at shutdown."""
        return self.config.shield is True

    def __repr__(self) -> str:
        return f"<Task name={self.name!r} func={callable_name(self.func)} state={self.state.value}>"

    # -- events ---------------------------------------------------------------------------------
    @property
    def started(self) -> anyio.Event:
        """An :class:`anyio.Event` set when the function really starts: an async function's
        first step on the event loop, a plain function's hand-off to one of the runtime's
        threads. Never set for a task that ends without starting (discarded with its request,
        cancelled while pending): wait for :meth:`wait` to learn how a task ended."""
        if self._started is None:
            self._started = anyio.Event()
            if self.started_at is not None:
                self._started.set()
        return self._started

    def done(self) -> bool:
        """Whether the task has finished (succeeded, failed or was cancelled)."""
        return self.state in _FINAL

    async def wait(self, timeout: float | None = None) -> None:
        """Wait until the task has finished, including its error handler if it failed.

        Returns normally whatever the outcome; look at :attr:`state` and :attr:`error`, or
        call :meth:`result`. Giving up after ``timeout`` seconds does not cancel the task.

        :raises FastAPITasksTimeoutError: if the task is still unfinished after ``timeout``
            seconds.
        :raises TypeError: if ``timeout`` is not a number.
        :raises ValueError: if ``timeout`` is negative.
        """
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(
                    f"timeout must be a number of seconds or None, not {type(timeout).__name__}"
                )
            if not timeout >= 0:  # also refuses NaN
                raise ValueError(f"timeout must be >= 0, got {timeout}")
        if self.state in _FINAL:
            return
        if self._done is None:
            self._done = anyio.Event()
        if timeout is None:
            await self._done.wait()
            return
        with anyio.move_on_after(timeout):
            await self._done.wait()
        if self.state not in _FINAL:
            raise FastAPITasksTimeoutError(
                f"task {self.name!r} was still {self.state.value} after waiting {timeout:g}s"
            )

    # -- outcome and control (the controlled run path is in _controls) ------------------------
    @property
    def attempts(self) -> int:
        """How many times the function has started: 0 before it starts, 1 without ``retry``,
        up to ``Retry.attempts`` with it."""
        attempts: int | None = getattr(self, "_attempts", None)
        if attempts is not None:
            return attempts
        return 0 if self.started_at is None else 1

    def result(self) -> T:
        """The function's return value, once the task has succeeded.

        :raises Exception: the task's own exception, if it failed (its last one, with
            ``retry``; ``FastAPITasksTimeoutError`` if it ran out of time).
        :raises FastAPITasksCancelledError: if the task was cancelled.
        :raises FastAPITasksNotFinishedError: if the task has not finished yet.
        """
        state = self.state
        if state is TaskState.SUCCEEDED:
            return cast("T", getattr(self, "_result", None))
        if state is TaskState.FAILED and self.error is not None:
            raise self.error
        if state is TaskState.CANCELLED:
            raise FastAPITasksCancelledError(f"task {self.name!r} was cancelled: no result")
        raise FastAPITasksNotFinishedError(
            f"task {self.name!r} is still {state.value}: await task.wait() before result()"
        )

    def cancel(self) -> bool:
        """Cancel the task, shielded or not; ``False`` if it had already finished.

        A pending task ends ``cancelled`` at once and never starts (an after-route or
        after-response task not released yet is dropped and counted as discarded). A running
        async task is cancelled at its next ``await`` and ends ``cancelled`` when it has
        unwound (unless it suppresses the cancellation). A running sync task cannot be
        interrupted: it is marked ``cancelled`` at once and its thread finishes on its own
        (it can see the cancellation through ``anyio.from_thread.check_cancelled()``).
        Safe from any thread of the application.
        """
        if self.state in _FINAL:
            return False
        backend = self._backend
        if backend is None:  # not admitted yet: deferred to after the route/response, captured
            self._mark_finished(TaskState.CANCELLED)
            return True
        cancelled: bool = backend.owner.cancel_task(self)
        return cancelled

    def _mark_finished(self, state: TaskState, error: BaseException | None = None) -> None:
        self.state = state
        self.error = error
        self._runner = None
        if self._done is not None:
            self._done.set()

    # -- running again --------------------------------------------------------------------------
    async def __call__(self) -> T:
        """Run the function once more, now, in the calling task, and return its result.

        Exceptions propagate to the caller, which makes a retry loop in an error handler
        straightforward. A plain function runs in the runtime's thread pool. It runs in the
        caller's context, not in the task's.
        """
        if self.is_async:
            func = cast("Callable[..., Awaitable[T]]", self.func)
            return await func(*self.args, **self.kwargs)
        sync_func = cast("Callable[..., T]", self.func)
        call = functools.partial(sync_func, *self.args, **self.kwargs)
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)
