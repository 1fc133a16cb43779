"""Task configuration: :class:`TaskConfig` and how two configurations merge."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._task import Task

__all__ = ["ErrorHandler", "TaskConfig"]

#: ``on_error(task, error)``: a plain function or a coroutine function. A plain function runs in
#: the runtime's thread pool so it may block; a coroutine function runs on the event loop.
ErrorHandler = Callable[["Task[..., Any]", Exception], Awaitable[None] | None]


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
        if self.on_error is not None and not callable(self.on_error):
            raise TypeError(
                "TaskConfig.on_error must be a callable on_error(task, error) or None, "
                f"not {type(self.on_error).__name__}"
            )

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
