"""Task configuration: :class:`TaskConfig` and how two configurations merge."""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._retry import Retry

if TYPE_CHECKING:
    from ._task import Task

__all__ = ["ErrorHandler", "TaskConfig", "check_handler"]

#: ``on_error(task, error)``: a plain function or a coroutine function. A plain function runs in
#: the runtime's thread pool so it may block; a coroutine function runs on the event loop. Both
#: run in the failed task's context. An awaitable returned by a plain function is awaited.
ErrorHandler = Callable[["Task[..., Any]", Exception], Awaitable[None] | None]

# Handlers already checked (``tasks.task(on_error=...)`` may run on every request).
_checked: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def check_handler(handler: object) -> None:
    """Refuse an ``on_error`` handler that could never run: not callable, a generator or async
    generator function, or one that cannot be called as ``handler(task, error)``.

    :raises TypeError: saying what is wrong with the handler.
    """
    try:
        if _checked.get(handler):
            return
    except TypeError:  # not weak-referenceable or not hashable: check it every time
        pass
    if not callable(handler):
        raise TypeError(
            "TaskConfig.on_error must be a callable on_error(task, error) or None, "
            f"not {type(handler).__name__}"
        )
    unwrapped: object = handler
    while isinstance(unwrapped, functools.partial):
        unwrapped = unwrapped.func
    if inspect.isgeneratorfunction(unwrapped) or inspect.isasyncgenfunction(unwrapped):
        raise TypeError(
            "TaskConfig.on_error must be a plain function or a coroutine function, not a "
            "generator function: it would never run"
        )
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        signature = None  # no signature to check (some builtins): accept it
    if signature is not None:
        try:
            signature.bind(None, None)
        except TypeError:
            raise TypeError(
                f"TaskConfig.on_error must accept two positional arguments (task, error); "
                f"{signature} does not"
            ) from None
    with contextlib.suppress(TypeError):
        _checked[handler] = True


@dataclass(frozen=True)
class TaskConfig:
    """Settings for a task. ``None`` means "not set here": the value is inherited on merge.

    :param name: a human-readable name used in logs and stats (defaults to the function's
        qualified name).
    :param shield: when true the task is protected from cancellation at shutdown and is drained
        (runs to completion) before the application's own lifespan teardown.
    :param on_error: called as ``on_error(task, error)`` when the task raises an ``Exception``
        (after its last attempt, with ``retry``).
    :param timeout: seconds each attempt may run; one still running then ends ``failed`` with
        ``FastAPITasksTimeoutError`` (an async one is cancelled; a sync one's thread is left to
        finish on its own). ``math.inf`` lifts a timeout set in the global config.
    :param retry: a :class:`~fastapi_tasks.Retry` policy: run a failing task again.
    :param limit: at most this many tasks of this name (see ``name``) run at once; the others
        wait, in the order they were scheduled, as ``pending``.
    :raises TypeError: if a field has the wrong type.
    :raises ValueError: if ``timeout`` or ``limit`` is out of range.
    """

    name: str | None = None
    shield: bool | None = None
    on_error: ErrorHandler | None = None
    timeout: float | None = None
    retry: Retry | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(
                f"TaskConfig.name must be a str or None, not {type(self.name).__name__}"
            )
        if self.shield is not None and not isinstance(self.shield, bool):
            raise TypeError(
                f"TaskConfig.shield must be a bool or None, not {type(self.shield).__name__}"
            )
        if self.on_error is not None:
            check_handler(self.on_error)
        timeout = self.timeout
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(
                    f"TaskConfig.timeout must be a number of seconds or None, not "
                    f"{type(timeout).__name__}"
                )
            if not timeout > 0:  # also refuses NaN
                raise ValueError(f"TaskConfig.timeout must be > 0 seconds, got {timeout}")
        if self.retry is not None and not isinstance(self.retry, Retry):
            raise TypeError(
                f"TaskConfig.retry must be a fastapi_tasks.Retry or None, not "
                f"{type(self.retry).__name__}"
            )
        limit = self.limit
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError(
                    f"TaskConfig.limit must be an int or None, not {type(limit).__name__}"
                )
            if limit < 1:
                raise ValueError(f"TaskConfig.limit must be >= 1, got {limit}")
        # Read by TaskRuntime.submit() for every task: tasks without controls take the short
        # path and pay nothing for them (see _controls).
        object.__setattr__(
            self,
            "controlled",
            (timeout is not None and timeout != math.inf)
            or self.retry is not None
            or limit is not None,
        )

    #: Whether a timeout, retry policy or limit applies (set by ``__post_init__``).
    controlled: bool = field(init=False, repr=False, compare=False, default=False)

    @property
    def shielded(self) -> bool:
        """Whether the task is shielded (``shield`` set to ``True``)."""
        return self.shield is True

    def merge(self, override: TaskConfig) -> TaskConfig:
        """Return a new config: every field set in ``override`` wins, unset ones come from ``self``.

        :raises TypeError: if ``override`` is not a :class:`TaskConfig`.
        """
        if not isinstance(override, TaskConfig):
            raise TypeError(f"can only merge a TaskConfig, not {type(override).__name__}")
        return TaskConfig(
            name=self.name if override.name is None else override.name,
            shield=self.shield if override.shield is None else override.shield,
            on_error=self.on_error if override.on_error is None else override.on_error,
            timeout=self.timeout if override.timeout is None else override.timeout,
            retry=self.retry if override.retry is None else override.retry,
            limit=self.limit if override.limit is None else override.limit,
        )
