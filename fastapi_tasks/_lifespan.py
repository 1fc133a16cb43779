"""``add_tasks(app)`` and ``task_runtime(app)``: run the task runtime with the app's lifespan.

``add_tasks()`` installs :class:`~._request_hooks.TasksMiddleware`, which sees the ASGI
``lifespan`` messages before the app does (:class:`LifespanHooks`):

* ``lifespan.startup`` from the server: the runtime starts accepting work, then the app's own
  startup runs (every lifespan it has: ``lifespan=``, ``on_startup`` handlers, the lifespans
  of routers merged by ``include_router``, before or after ``add_tasks()``), so startup code may
  schedule tasks; they start once the app is serving.
* ``lifespan.shutdown`` from the server: the runtime drains first, then the message goes on to
  the app and all its lifespans tear down. Shielded tasks can still use what they opened.
* Mounted FastAPI apps that called ``add_tasks()`` themselves get their runtimes run with the
  outer app's (a mounted app's lifespan never runs).
* A lifespan that ends without the shutdown message (the server was forced to exit, as on a
  second Ctrl+C in Uvicorn) is logged at ERROR level with the number of shielded tasks lost.

``task_runtime(app)`` does the same as an async context manager, for an app whose lifespan the
server does not run (a mounted app under an outer app without ``add_tasks()``), or to control
the order yourself.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.routing import BaseRoute, Mount

from ._config import TaskConfig
from ._log import logger
from ._periodic import stop_periodic
from ._request_hooks import ASGIApp, Message, Receive, Scope, Send, TasksMiddleware
from ._runtime import TaskRuntime
from ._shutdown import drain
from .errors import (
    FastAPITasksAlreadyAddedError,
    FastAPITasksAppStartedError,
    FastAPITasksUninitializedAppError,
)

__all__ = ["STATE_KEY", "add_tasks", "get_runtime", "task_runtime"]

#: Attribute of ``app.state`` that holds the runtime.
STATE_KEY = "fastapi_tasks_runtime"
#: Attribute of ``app.state`` that holds the ``shutdown_timeout``.
TIMEOUT_KEY = "fastapi_tasks_shutdown_timeout"

#: Runtimes between start and stop, for the report at interpreter exit.
_running: weakref.WeakSet[TaskRuntime] = weakref.WeakSet()


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

    Call it once, when building the app. The runtime starts when the app's lifespan starts,
    before the app's own startup code, and drains at shutdown before any of the app's
    lifespans tear down (``lifespan=``, ``on_startup``/``on_shutdown`` handlers and routers'
    lifespans, whenever they were added). Lifespan state stays available to requests. A FastAPI
    app mounted in this one with ``app.mount()`` uses this runtime, or its own if it called
    ``add_tasks()`` too (run with this app's lifespan).

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
    :raises FastAPITasksAppStartedError: if the app already started serving.
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
        hooks = LifespanHooks(app)
        app.add_middleware(
            TasksMiddleware,
            runtime=runtime,
            lifespan=hooks,
            start_unmanaged=hooks.start_unmanaged,
        )
    except RuntimeError as exc:
        raise FastAPITasksAppStartedError(
            "add_tasks() must be called before the application starts serving"
        ) from exc
    setattr(app.state, STATE_KEY, runtime)
    setattr(app.state, TIMEOUT_KEY, None if shutdown_timeout is None else float(shutdown_timeout))


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


def _timeout(app: Any) -> float | None:
    timeout: float | None = getattr(app.state, TIMEOUT_KEY, None)
    return timeout


def _mounted(routes: Iterable[BaseRoute], found: list[FastAPI]) -> list[FastAPI]:
    """FastAPI apps with a task runtime mounted (at any depth) under ``routes``."""
    for route in routes:
        if not isinstance(route, Mount):
            continue
        sub = route.app
        if (
            isinstance(sub, FastAPI)
            and isinstance(getattr(sub.state, STATE_KEY, None), TaskRuntime)
            and sub not in found
        ):
            found.append(sub)
        _mounted(route.routes, found)
    return found


class _Runtimes:
    """The runtimes one lifespan runs: an app's and those of the apps mounted in it."""

    def __init__(self, app: FastAPI) -> None:
        self.apps = [app, *_mounted(app.routes, [])]
        self.runtimes = [get_runtime(each) for each in self.apps]
        self.stack = AsyncExitStack()
        self.started = False
        self.drained = False

    def prepare(self) -> None:
        """Accept work (startup code may schedule; those tasks wait for :meth:`serve`)."""
        for runtime in self.runtimes:
            if runtime.state in ("starting", "running", "draining"):
                raise FastAPITasksAppStartedError(
                    "this task runtime is already running (one lifespan at a time; an app "
                    "mounted in two places, or run by two lifespans, cannot share it)"
                )
        for runtime in self.runtimes:
            runtime.prepare()
            _running.add(runtime)

    async def serve(self) -> None:
        for runtime in self.runtimes:
            await self.stack.enter_async_context(runtime.serving())
        self.started = True

    async def drain(self) -> None:
        self.drained = True
        async with anyio.create_task_group() as group:
            for app, runtime in zip(self.apps, self.runtimes, strict=True):
                group.start_soon(_drain, runtime, _timeout(app))

    def forced_exit(self) -> None:
        """The lifespan ended without the shutdown message: report what is lost."""
        for app, runtime in zip(self.apps, self.runtimes, strict=True):
            _report_lost(runtime, f"the lifespan of {_name(app)} ended without a shutdown")

    async def stop(self) -> None:
        """Give up whatever the drain left (or everything, if it did not run)."""
        with anyio.CancelScope(shield=True):
            await self.stack.aclose()
        for runtime in self.runtimes:
            if runtime.state != "stopped":  # the app's startup failed before serving began
                stop_periodic(runtime)
                runtime.stop()
            _running.discard(runtime)


async def _drain(runtime: TaskRuntime, timeout: float | None) -> None:
    await drain(runtime, timeout=timeout)


def _name(app: Any) -> str:
    title = getattr(app, "title", None)
    return f"app {title!r}" if title else "the app"


def _report_lost(runtime: TaskRuntime, why: str) -> None:
    if runtime.state not in ("starting", "running"):
        return
    live = list(runtime.live)
    # Shielded tasks still live, and those the event loop's teardown cancelled already (it
    # cancels every task at once, in no particular order: the ledger noted them).
    shielded = [task.name for task in live if task.shielded] + runtime.ledger.lost
    if not live and not shielded:
        logger.warning(
            "fastapi-tasks: %s (a forced exit, such as a second Ctrl+C?); no task was running",
            why,
        )
        return
    logger.error(
        "fastapi-tasks: %s (a forced exit, such as a second Ctrl+C?): %d shielded task(s) "
        "lost, %d task(s) in all; the drain did not run: %s",
        why,
        len(shielded),
        len(live) + len(runtime.ledger.lost),
        ", ".join((shielded or [task.name for task in live])[:20]),
    )


class LifespanHooks:
    """The ``lifespan`` branch of :class:`TasksMiddleware` (see the module docstring)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def start_unmanaged(self) -> None:
        """First request to this app, mounted in an outer app whose lifespan does not run this
        app's runtime (the outer app has no ``add_tasks()``, and no ``task_runtime()`` was
        entered). Rather than failing every request, start the runtime now, and say loudly
        that no drain will run: at exit, shielded tasks still running are reported lost."""
        runtimes = _Runtimes(self.app)
        runtimes.prepare()
        for runtime in runtimes.runtimes:
            runtime.state = "running"
        logger.warning(
            "fastapi-tasks: %s is mounted in an app whose lifespan does not run its task "
            "runtime: started it on the first request. No drain will run at shutdown (shielded "
            "tasks still running then are lost, and reported). Call add_tasks() on the outer "
            "app, or enter 'async with task_runtime(...)' in the outer app's lifespan",
            _name(self.app),
        )

    async def __call__(self, inner: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        runtimes: _Runtimes | None = None
        shutdown_requested = False

        async def hooked_receive() -> Message:
            nonlocal runtimes, shutdown_requested
            message = await receive()
            kind = message["type"]
            if kind == "lifespan.startup":
                starting = _Runtimes(self.app)
                try:
                    starting.prepare()
                except FastAPITasksAppStartedError as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    raise
                runtimes = starting
            elif kind == "lifespan.shutdown" and runtimes is not None:
                shutdown_requested = True
                await runtimes.drain()
            return message

        async def hooked_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete" and runtimes is not None:
                await runtimes.serve()
            await send(message)

        try:
            await inner(scope, hooked_receive, hooked_send)
        except BaseException as exc:
            if (
                runtimes is not None
                and not shutdown_requested
                and isinstance(exc, anyio.get_cancelled_exc_class())
            ):
                runtimes.forced_exit()
            raise
        finally:
            if runtimes is not None:
                await runtimes.stop()


@asynccontextmanager
async def task_runtime(app: FastAPI) -> AsyncIterator[None]:
    """Run ``app``'s task runtime inside the block; drain it when the block ends.

    For an app whose lifespan the server does not run (a FastAPI app mounted in an outer app
    that does not call ``add_tasks()``: enter it in the outer app's lifespan), or to place the
    drain yourself. Inside an app's own lifespan (where ``add_tasks()`` already runs the
    runtime) it does nothing. Tasks scheduled inside the block before it yields start right
    away; at the end of the block, the drain runs (see docs/shutdown.md).

    :raises FastAPITasksUninitializedAppError: if ``add_tasks(app)`` was not called.
    :raises FastAPITasksAppStartedError: if the runtime is being run by another lifespan.
    """
    runtime = get_runtime(app)
    if runtime.state in ("starting", "running"):
        yield  # the app's lifespan runs it already: we are inside it
        return
    runtimes = _Runtimes(app)
    runtimes.prepare()
    try:
        await runtimes.serve()
        try:
            yield
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                runtimes.forced_exit()
                raise
            await runtimes.drain()
            raise
        await runtimes.drain()
    finally:
        await runtimes.stop()


@atexit.register
def _report_at_exit() -> None:  # pragma: no cover - runs at interpreter exit
    for runtime in list(_running):
        _report_lost(runtime, "the interpreter is exiting while the task runtime still runs")
