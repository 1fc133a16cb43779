"""Exceptions raised by fastapi-tasks.

Every exception derives from :class:`FastAPITasksError`, so one ``except`` clause catches them
all. Each one also derives from the closest builtin, so code that already catches
``RuntimeError`` keeps working::

    FastAPITasksError (Exception)
    ├── FastAPITasksUninitializedAppError (RuntimeError)  Tasks used without add_tasks()/lifespan
    ├── FastAPITasksAlreadyAddedError (RuntimeError)      add_tasks() called twice on one app
    ├── FastAPITasksShutdownError (RuntimeError)          schedule() after shutdown began
    ├── FastAPITasksQueueFullError (RuntimeError)         schedule() beyond max_pending
    └── FastAPITasksTimeoutError (TimeoutError)           testing helper gave up waiting
"""

from __future__ import annotations

__all__ = [
    "FastAPITasksAlreadyAddedError",
    "FastAPITasksError",
    "FastAPITasksQueueFullError",
    "FastAPITasksShutdownError",
    "FastAPITasksTimeoutError",
    "FastAPITasksUninitializedAppError",
]


class FastAPITasksError(Exception):
    """Base class of every exception raised by fastapi-tasks."""


class FastAPITasksUninitializedAppError(FastAPITasksError, RuntimeError):
    """``Tasks`` was used on an app without ``add_tasks(app)``, or before its lifespan ran."""


class FastAPITasksAlreadyAddedError(FastAPITasksError, RuntimeError):
    """``add_tasks()`` was called a second time on the same application."""


class FastAPITasksShutdownError(FastAPITasksError, RuntimeError):
    """A task was scheduled after the runtime stopped accepting work (shutdown began)."""


class FastAPITasksQueueFullError(FastAPITasksError, RuntimeError):
    """A task was scheduled while ``max_pending`` tasks were already waiting to start."""


class FastAPITasksTimeoutError(FastAPITasksError, TimeoutError):
    """A testing helper gave up waiting for tasks to finish."""
