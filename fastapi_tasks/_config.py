"""Task configuration: :class:`TaskConfig` and how two configurations merge."""

from __future__ import annotations

import contextlib
import functools
import inspect
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    :param on_error: called as ``on_error(task, error)`` when the task raises an ``Exception``.
    :raises TypeError: if a field has the wrong type.
    """

    name: str | None = None
    shield: bool | None = None
    on_error: ErrorHandler | None = None

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
        )
