"""``add_tasks(app)``: compose the task runtime into the application's lifespan.

Order at startup: the app's own lifespan (and ``on_startup`` handlers) first, then the runtime.
Order at shutdown: the runtime drains first, then the app's own teardown runs, so shielded tasks
can still use the resources the app's lifespan opened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from ._config import TaskConfig
from ._periodic import stop_periodic
from ._request_hooks import MarkingExceptionHandlers, TasksMiddleware
from ._runtime import TaskRuntime
from ._shutdown import drain
from .errors import (
    FastAPITasksAlreadyAddedError,
    FastAPITasksAppStartedError,
    FastAPITasksUninitializedAppError,
)

__all__ = ["STATE_KEY", "add_tasks", "get_runtime"]

#: Attribute of ``app.state`` that holds the runtime.
STATE_KEY = "fastapi_tasks_runtime"


def _check_count(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def add_tasks(
    app: FastAPI,
    *,
    config: TaskConfig | None = None,
    thread_limit: int = 40,
    max_pending: int | None = None,
    shutdown_timeout: float | None = None,
    async_limit: int | None = None,
) -> None:
    """Wire a task runtime into ``app`` so endpoints can use the ``Tasks`` dependency.

    Call it once, when building the app. The app's own ``lifespan=`` (or ``on_startup`` /
    ``on_shutdown`` handlers) keeps working and its state stays available to requests.

    :param config: the global :class:`TaskConfig` every task starts from.
    :param thread_limit: threads the runtime may use for plain ``def`` tasks. These are the
        runtime's own; FastAPI's threads for ``def`` endpoints are not used.
    :param max_pending: when set, ``schedule()`` raises ``FastAPITasksQueueFullError`` while this
        many tasks are waiting to start (for a thread, or for a slot of a concurrency limit).
    :param shutdown_timeout: seconds the shutdown drain may take; ``None`` waits for shielded
        tasks as long as they run. At the deadline the remaining tasks are abandoned and logged.
    :param async_limit: when set, at most this many ``async def`` tasks run at once; the others
        wait in the order they were scheduled, as ``pending`` (the counterpart of
        ``thread_limit``; ``None``, the default, does not bound them).
    :raises TypeError: for arguments of the wrong type.
    :raises ValueError: for out-of-range numbers.
    :raises FastAPITasksAlreadyAddedError: if called twice on the same app.
    """
    if not isinstance(app, FastAPI):
        raise TypeError(f"add_tasks() needs a FastAPI application, not {type(app).__name__}")
    if config is not None and not isinstance(config, TaskConfig):
        raise TypeError(f"config must be a TaskConfig, not {type(config).__name__}")
    _check_count("thread_limit", thread_limit, minimum=1)
    if max_pending is not None:
        _check_count("max_pending", max_pending, minimum=1)
    if async_limit is not None:
        _check_count("async_limit", async_limit, minimum=1)
    if shutdown_timeout is not None:
        if isinstance(shutdown_timeout, bool) or not isinstance(shutdown_timeout, (int, float)):
            raise TypeError(
                f"shutdown_timeout must be a number of seconds or None, not "
                f"{type(shutdown_timeout).__name__}"
            )
        if not shutdown_timeout >= 0:  # also rejects NaN
            raise ValueError(f"shutdown_timeout must be >= 0, got {shutdown_timeout}")
    if getattr(app.state, STATE_KEY, None) is not None:
        raise FastAPITasksAlreadyAddedError(
            "add_tasks() was already called for this app; call it once per application"
        )

    runtime = TaskRuntime(
        config=config or TaskConfig(),
        thread_limit=thread_limit,
        max_pending=max_pending,
        async_limit=async_limit,
    )
    try:
        app.add_middleware(TasksMiddleware, runtime=runtime)
    except RuntimeError as exc:
        raise FastAPITasksAppStartedError(
            "add_tasks() must be called before the application starts serving"
        ) from exc
    if not isinstance(app.exception_handlers, MarkingExceptionHandlers):
        app.exception_handlers = MarkingExceptionHandlers(app.exception_handlers)
    setattr(app.state, STATE_KEY, runtime)
    app_lifespan = app.router.lifespan_context
    timeout = None if shutdown_timeout is None else float(shutdown_timeout)

    @asynccontextmanager
    async def lifespan(lifespan_app: Any) -> AsyncIterator[Any]:
        runtime.prepare()  # the app's startup code may schedule; those tasks wait for serving()
        try:
            async with app_lifespan(lifespan_app) as app_state, runtime.serving():
                try:
                    yield app_state
                finally:
                    await drain(runtime, timeout=timeout)
        finally:
            if runtime.state != "stopped":  # the app's startup failed before serving began
                stop_periodic(runtime)
                runtime.stop()

    app.router.lifespan_context = lifespan


def get_runtime(app: Any) -> TaskRuntime:
    """The runtime ``add_tasks()`` attached to ``app``.

    :raises FastAPITasksUninitializedAppError: if ``add_tasks(app)`` was not called.
    """
    runtime = getattr(getattr(app, "state", None), STATE_KEY, None)
    if not isinstance(runtime, TaskRuntime):
        raise FastAPITasksUninitializedAppError(
            "this app has no task runtime: call add_tasks(app) when you create the app"
        )
    return runtime
