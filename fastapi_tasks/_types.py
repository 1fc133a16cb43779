"""Ready-made aliases for annotating your own code."""

from __future__ import annotations

from typing import Any, TypeAlias

from ._task import Task

__all__ = ["AnyTask"]

#: Any task, whatever its function's parameters and result: the type of the ``task`` argument
#: of an ``on_error(task, error)`` handler (``async def alert(task: AnyTask, error: Exception)``).
AnyTask: TypeAlias = Task[..., Any]
