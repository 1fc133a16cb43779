"""Failure routing: a task's exception is logged (by name, never with its arguments) and handed
to its ``on_error`` handler. Nothing a task or a handler raises can escape into the runtime.

Everything here runs inside the failed task's own context copy, so the handler (and the log
record, for logging set-ups that read context variables) sees what the task saw.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ._callables import callable_name, is_async_callable
from ._log import logger

if TYPE_CHECKING:
    from anyio import CapacityLimiter

    from ._task import Task

__all__ = ["handle_failure", "log_failure"]


def log_failure(task: Task[..., Any], error: BaseException) -> None:
    with contextlib.suppress(Exception):  # a broken log handler must not break the runtime
        logger.error(
            "Task %r (function %s) failed with %s",
            task.name,
            callable_name(task.func),
            type(error).__name__,
            exc_info=(type(error), error, error.__traceback__),
        )


async def handle_failure(
    task: Task[..., Any],
    error: BaseException,
    limiter: CapacityLimiter | None,
    cancelled_exc: type[BaseException],
) -> None:
    """Log ``error`` and run the task's ``on_error`` handler (for ``Exception`` subclasses).

    A plain handler runs in the runtime's thread pool; an awaitable it returns is awaited. A
    handler that raises, or is cancelled, is logged. Never raises.
    """
    log_failure(task, error)
    handler = task.config.on_error
    if handler is None or not isinstance(error, Exception):
        return
    try:
        if is_async_callable(handler):
            await handler(task, error)  # type: ignore[misc]
        else:
            (result,) = await anyio.to_thread.run_sync(_call, handler, task, error, limiter=limiter)
            if inspect.isawaitable(result):
                await result
    except cancelled_exc:
        logger.warning("The error handler of task %r was cancelled", task.name)
    except BaseException as handler_error:  # noqa: BLE001 - contained: logged
        with contextlib.suppress(Exception):
            logger.error(
                "The error handler %s of task %r raised %s",
                callable_name(handler),
                task.name,
                type(handler_error).__name__,
                exc_info=(type(handler_error), handler_error, handler_error.__traceback__),
            )


def _call(handler: Callable[..., Any], task: Task[..., Any], error: Exception) -> tuple[Any]:
    """Call a plain handler in a worker thread. Its result travels in a tuple: trio refuses
    a worker function that returns a coroutine, which a plain handler may do."""
    return (handler(task, error),)
