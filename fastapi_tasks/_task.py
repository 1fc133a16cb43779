"""The :class:`Task` handle: what was scheduled, with which settings, and how it ended."""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Awaitable, Callable
from types import FunctionType, MethodType
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast

import anyio
import anyio.to_thread

from ._config import TaskConfig

if TYPE_CHECKING:
    from anyio import CancelScope, CapacityLimiter

__all__ = ["Task", "TaskState", "callable_name", "classify", "is_async_callable"]

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
    """Cancelled at shutdown, discarded because the endpoint raised, or rejected on release."""


_FINAL = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})
# Module constants for the hot path (``Task()`` runs on every ``schedule()``): a global lookup
# instead of an attribute lookup on an enum class or a module.
_PENDING = TaskState.PENDING
_CO_COROUTINE = inspect.CO_COROUTINE


def is_async_callable(func: object) -> bool:
    """Whether calling ``func`` returns a coroutine.

    Sees through :func:`functools.partial` (nested too) and recognises objects whose class
    defines ``async def __call__``.
    """
    while isinstance(func, functools.partial):
        func = func.func
    call = getattr(type(func), "__call__", None)  # noqa: B004 - the class's own __call__
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call)


def callable_name(func: object) -> str:
    """A readable dotted name for ``func`` (never its arguments)."""
    while isinstance(func, functools.partial):
        func = func.func
    qualname = getattr(func, "__qualname__", None)
    if qualname is None:
        qualname = type(func).__qualname__
    module = getattr(func, "__module__", None) or type(func).__module__
    return f"{module}.{qualname}" if module and module != "builtins" else str(qualname)


_GENERATOR_FLAGS = inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR


def classify(func: object) -> bool:
    """Validate a task callable and tell whether it is async (``True``) or plain (``False``).

    Plain Python functions and methods take a fast path (one look at the code flags):
    ``schedule()`` calls this for every task.

    :raises TypeError: for non-callables, awaitables passed by mistake, and generator functions.
    """
    target = func.__func__ if type(func) is MethodType else func
    if type(target) is FunctionType:
        flags = target.__code__.co_flags
        if flags & _CO_COROUTINE:
            return True
        if not flags & _GENERATOR_FLAGS and not inspect.iscoroutinefunction(target):
            return False
    if inspect.isawaitable(func):
        raise TypeError(
            "schedule() takes the function itself and its arguments, not an awaitable: "
            "write tasks.schedule(fn, arg) instead of tasks.schedule(fn(arg))"
        )
    if not callable(func):
        raise TypeError(f"schedule() needs a callable, got {type(func).__name__}")
    unwrapped: object = func
    while isinstance(unwrapped, functools.partial):
        unwrapped = unwrapped.func
    if inspect.isasyncgenfunction(unwrapped) or inspect.isgeneratorfunction(unwrapped):
        raise TypeError(
            f"{callable_name(func)} is a generator function; a task must be a plain function "
            "or a coroutine function"
        )
    return is_async_callable(func)


class Task(Generic[P, T]):
    """A scheduled call of ``func(*args, **kwargs)``.

    Returned by every ``schedule()``. Its :attr:`state` moves from ``pending`` to ``running``
    to one of ``succeeded``, ``failed`` or ``cancelled``. ``repr()`` and log lines name the task
    and its function, never its arguments.

    Events (:attr:`started`, :meth:`wait`) are meant for the event loop thread.
    """

    __slots__ = (
        "__weakref__",
        "_done",
        "_limiter",
        "_started",
        "args",
        "config",
        "error",
        "func",
        "is_async",
        "kwargs",
        "scope",
        "started_at",
        "state",
        "thread_state",
    )

    func: Callable[P, T] | Callable[P, Awaitable[T]]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    config: TaskConfig
    #: The exception that made the task fail, or ``None``.
    error: BaseException | None
    state: TaskState
    is_async: bool
    #: Monotonic clock reading (``anyio.current_time()``) when the task started, or ``None``.
    started_at: float | None
    #: Runtime bookkeeping: the cancel scope of a shielded or threaded run.
    scope: CancelScope | None
    #: Runtime bookkeeping for thread hand-off at shutdown (0 idle, 1 in thread, 2 abandoned).
    thread_state: int

    def __init__(
        self,
        func: Callable[P, T] | Callable[P, Awaitable[T]],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        config: TaskConfig | None = None,
        *,
        limiter: CapacityLimiter | None = None,
    ) -> None:
        """Create a task handle. Usually made by ``schedule()``, not by hand.

        :raises TypeError: if ``func`` is not a plain or coroutine function (or an awaitable was
            passed by mistake).
        """
        self.is_async = classify(func)
        self.func = func
        self.args = args
        self.kwargs = {} if kwargs is None else kwargs
        self.config = TaskConfig() if config is None else config
        self.state = _PENDING
        self.error = None
        self.started_at = None
        self.scope = None
        self.thread_state = 0
        self._limiter = limiter
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
        """An :class:`anyio.Event` set when the function starts (for a sync function: when it
        is handed to a worker thread)."""
        if self._started is None:
            self._started = anyio.Event()
            if self.state is not _PENDING:
                self._started.set()
        return self._started

    def done(self) -> bool:
        """Whether the task has finished (succeeded, failed or was cancelled)."""
        return self.state in _FINAL

    async def wait(self) -> None:
        """Wait until the task has finished, including its error handler if it failed.

        Returns normally whatever the outcome; look at :attr:`state` and :attr:`error`.
        """
        if self.state in _FINAL:
            return
        if self._done is None:
            self._done = anyio.Event()
        await self._done.wait()

    def _mark_started(self, now: float) -> None:
        self.state = TaskState.RUNNING
        self.started_at = now
        if self._started is not None:
            self._started.set()

    def _mark_finished(self, state: TaskState, error: BaseException | None = None) -> None:
        self.state = state
        self.error = error
        if self._started is not None and not self._started.is_set():
            self._started.set()
        if self._done is not None:
            self._done.set()

    # -- running again --------------------------------------------------------------------------
    async def __call__(self) -> T:
        """Run the function once more, now, in the calling task, and return its result.

        Exceptions propagate to the caller, which makes a retry loop in an error handler
        straightforward. A plain function runs in the runtime's thread pool.
        """
        if self.is_async:
            func = cast("Callable[..., Awaitable[T]]", self.func)
            return await func(*self.args, **self.kwargs)
        sync_func = cast("Callable[..., T]", self.func)
        call = functools.partial(sync_func, *self.args, **self.kwargs)
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)
