"""Async execution: every scheduled ``async def`` task is one native task of its own.

The native task is created in the task's context copy (see ``_backend``), so it sees the
scheduling code's context variables and keeps what it sets to itself. It starts on a later turn
of the event loop, after everything already ready to run, so no pattern of tasks scheduling
tasks can hold the loop. When it ends, nothing of it stays referenced by the runtime.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ._failures import handle_failure
from ._log import logger
from ._task import Task, TaskState

if TYPE_CHECKING:
    from anyio import CapacityLimiter

    from ._accounting import Ledger
    from ._backend import Backend

__all__ = ["AsyncRunner"]

_PENDING = TaskState.PENDING
_RUNNING = TaskState.RUNNING
_SUCCEEDED = TaskState.SUCCEEDED
_FAILED = TaskState.FAILED
_CANCELLED = TaskState.CANCELLED
_monotonic = time.monotonic


class AsyncRunner:
    __slots__ = ("ledger", "limiter")

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        #: The thread pool's limiter, for plain ``on_error`` handlers.
        self.limiter: CapacityLimiter | None = None

    def spawn(self, task: Task[..., Any], backend: Backend) -> None:
        """Start ``task`` as a native task on ``backend``'s loop (loop thread)."""
        task._backend = backend
        if backend.cancels_natively:
            task._runner = backend.spawn(self.run, task, context=task.context)
        else:
            backend.spawn(self._run_in_scope, task, context=task.context)

    async def _run_in_scope(self, task: Task[..., Any]) -> None:
        """Trio: the task opens its own cancel scope, the handle the runtime cancels it by."""
        import trio

        with trio.CancelScope() as scope:
            task._runner = scope
            await self.run(task)

    async def run(self, task: Task[..., Any]) -> None:
        """The body of the native task: account, run, route a failure. Never raises.

        The start is accounted here, mirroring :meth:`~._accounting.Ledger.start` (keep the
        two in step), and success through :meth:`~._accounting.Ledger.succeeded`: this runs
        for every async task, and each saved call is ~0.1 us (process time, 2 cores). Every
        other outcome goes through :meth:`~._accounting.Ledger.finish`.
        """
        if task.state is not _PENDING:  # cancelled or given up before it could start
            return
        ledger = self.ledger
        backend = task._backend
        assert backend is not None
        cancelled_exc = backend.cancelled_exc
        try:
            ledger.counters.started += 1
            task.state = _RUNNING
            task.started_at = _monotonic()
            if task._started is not None:
                task._started.set()
            if ledger.observer is not None:
                ledger.observer.started(task)
            try:
                task._result = await task.func(*task.args, **task.kwargs)
            except cancelled_exc:
                ledger.finish(task, _CANCELLED)
            except BaseException as exc:  # noqa: BLE001 - contained: logged and handled
                await handle_failure(task, exc, self.limiter, cancelled_exc)
                ledger.finish(task, _FAILED, exc)
            else:
                ledger.succeeded(task)
        except BaseException as exc:  # noqa: BLE001 - the runtime survives anything
            if not isinstance(exc, cancelled_exc):
                logger.exception("fastapi-tasks: internal error while running %r", task)
            if not task.done():
                ledger.finish(task, _CANCELLED)
