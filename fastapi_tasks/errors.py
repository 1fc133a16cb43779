"""Exceptions raised by fastapi-tasks.

Every exception derives from :class:`FastAPITasksError`, so one ``except`` clause catches them
all. Each one also derives from the closest builtin, so code that already catches
``RuntimeError`` keeps working::

    FastAPITasksError (Exception)
    ├── FastAPITasksUninitializedAppError (RuntimeError)
    │       add_tasks(app) was not called, the app's lifespan is not running (also a TestClient
    │       used outside its ``with`` block), or tasks.durable used without add_durable_broker()
    ├── FastAPITasksAlreadyAddedError (RuntimeError)
    │       add_tasks(), instrument() or add_durable_broker() called a second time on one app
    ├── FastAPITasksAppStartedError (RuntimeError)
    │       add_tasks() after the app started serving, or its lifespan entered while running
    ├── FastAPITasksNoRequestError (RuntimeError)
    │       after_route / after_response on a scheduler that has no request (get_tasks(app))
    ├── FastAPITasksShutdownError (RuntimeError)
    │       schedule() after shutdown began
    ├── FastAPITasksQueueFullError (RuntimeError)
    │       schedule() while max_pending tasks wait for a thread or a limit slot
    ├── FastAPITasksCancelledError (RuntimeError)
    │       task.result() of a task that was cancelled
    ├── FastAPITasksNotFinishedError (RuntimeError)
    │       task.result() of a task that has not finished
    └── FastAPITasksTimeoutError (TimeoutError)
            a task or a helper ran out of time: a task past its timeout (its error, which
            on_error receives), task.wait(timeout=...), a testing helper that gave up waiting

Arguments of the wrong type or out of range raise the builtin ``TypeError`` / ``ValueError``,
as everywhere in Python; each message says which argument and what was expected.
"""

from __future__ import annotations

__all__ = [
    "FastAPITasksAlreadyAddedError",
    "FastAPITasksAppStartedError",
    "FastAPITasksCancelledError",
    "FastAPITasksError",
    "FastAPITasksNoRequestError",
    "FastAPITasksNotFinishedError",
    "FastAPITasksQueueFullError",
    "FastAPITasksShutdownError",
    "FastAPITasksTimeoutError",
    "FastAPITasksUninitializedAppError",
]


class FastAPITasksError(Exception):
    """Base class of every exception raised by fastapi-tasks."""


class FastAPITasksUninitializedAppError(FastAPITasksError, RuntimeError):
    """The app is not set up for what was asked: ``add_tasks(app)`` was not called, its lifespan
    is not running, or ``tasks.durable`` was used without ``add_durable_broker()``."""


class FastAPITasksAlreadyAddedError(FastAPITasksError, RuntimeError):
    """``add_tasks()``, ``instrument()`` or ``add_durable_broker()`` was called a second time
    on the same application."""


class FastAPITasksAppStartedError(FastAPITasksError, RuntimeError):
    """``add_tasks()`` was called after the application started serving, or the lifespan of an
    app whose task runtime is running was entered again."""


class FastAPITasksNoRequestError(FastAPITasksError, RuntimeError):
    """``after_route`` / ``after_response`` was used on a scheduler that has no request
    (``get_tasks(app)``): those moments only exist inside a request."""


class FastAPITasksShutdownError(FastAPITasksError, RuntimeError):
    """A task was scheduled after the runtime stopped accepting work (shutdown began)."""


class FastAPITasksQueueFullError(FastAPITasksError, RuntimeError):
    """A task was scheduled while ``max_pending`` tasks were already waiting to start."""


class FastAPITasksCancelledError(FastAPITasksError, RuntimeError):
    """``task.result()`` was called on a task that was cancelled (by ``task.cancel()``, at
    shutdown, or dropped with its request): it has no result."""


class FastAPITasksNotFinishedError(FastAPITasksError, RuntimeError):
    """``task.result()`` was called on a task that is still pending or running: ``await
    task.wait()`` first."""


class FastAPITasksTimeoutError(FastAPITasksError, TimeoutError):
    """A task or a helper ran out of time: a task still running at its ``timeout`` ends
    ``failed`` with this error; ``task.wait(timeout=...)`` and the testing helpers raise it when
    they give up waiting."""
