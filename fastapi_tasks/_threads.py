"""The thread pool for plain ``def`` tasks: the runtime's own :class:`anyio.CapacityLimiter`.

At most ``thread_limit`` sync tasks run at once, on threads borrowed through the runtime's own
limiter; FastAPI's threads for ``def`` endpoints (anyio's default limiter) are never used. A
task that finds a free slot starts on the next loop turn; the others wait in a FIFO backlog
(``waiting`` in the stats, bounded by ``max_pending``) that costs a ``deque`` slot each. A
*carrier*, a native task holding one slot, runs its first task and then the backlog, one task
after another, and ends when the backlog is empty.

Each function runs in its own task's context copy (``Context.run`` in the thread), never in the
carrier's, so tasks of different requests never see each other's context variables.

A thread cannot be interrupted. At shutdown an unshielded task's carrier stops waiting for its
thread (the function can see that through ``anyio.from_thread.check_cancelled()``); the task
stays live until the thread returns and reports its outcome to the loop with a non-blocking
callback: a report that arrives after the loop closed is logged from the thread, never waited
on.
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections import deque
from contextvars import Context
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ._callables import callable_name
from ._failures import handle_failure, log_failure
from ._log import logger
from ._task import Task, TaskState

if TYPE_CHECKING:
    from ._accounting import Ledger
    from ._backend import Backend

__all__ = ["ThreadPool"]

# Task._thread_state: the hand-off between a carrier and the thread running its task.
_NOT_STARTED, _IN_THREAD, _FINISHED, _ABANDONED = 0, 1, 2, 3

_PENDING = TaskState.PENDING
_SUCCEEDED = TaskState.SUCCEEDED
_FAILED = TaskState.FAILED
_CANCELLED = TaskState.CANCELLED


class ThreadPool:
    def __init__(self, ledger: Ledger, thread_limit: int) -> None:
        self.ledger = ledger
        self.thread_limit = thread_limit
        self.limiter: anyio.CapacityLimiter | None = None
        #: Sync tasks waiting for a slot, in the order they were scheduled.
        self.backlog: deque[Task[..., Any]] = deque()
        #: Slots held by carriers (each runs at most one task at a time).
        self.slots_used = 0
        self._lock = threading.Lock()

    def reset(self) -> None:
        self.limiter = anyio.CapacityLimiter(self.thread_limit)
        self.backlog = deque()
        self.slots_used = 0

    def has_free_slot(self) -> bool:
        return self.slots_used < self.thread_limit

    def submit(self, task: Task[..., Any], backend: Backend) -> None:
        """Start ``task`` on a free slot, or queue it in the backlog (loop thread)."""
        task._backend = backend
        task._limiter = self.limiter
        if self.slots_used < self.thread_limit:
            self.slots_used += 1
            backend.spawn(self._carrier, task, backend, context=Context())
        else:
            self.backlog.append(task)
            self.ledger.counters.waiting += 1

    def cancel_waiting(self, *, include_shielded: bool) -> list[Task[..., Any]]:
        """Drop backlog tasks (shielded ones stay unless ``include_shielded``); return them."""
        dropped: list[Task[..., Any]] = []
        kept: deque[Task[..., Any]] = deque()
        for task in self.backlog:
            if task.shielded and not include_shielded:
                kept.append(task)
            else:
                dropped.append(task)
        self.backlog = kept
        self.ledger.counters.waiting -= len(dropped)  # controlled tasks may wait too
        for task in dropped:
            self.ledger.finish(task, _CANCELLED)
        return dropped

    # ---------------------------------------------------------------- carriers (event loop)
    async def _carrier(self, task: Task[..., Any], backend: Backend) -> None:
        try:
            while True:
                await self._run(task, backend)
                backlog = self.backlog
                if not backlog:
                    return
                task = backlog.popleft()
                self.ledger.counters.waiting -= 1
        finally:
            self.slots_used -= 1

    async def _run(self, task: Task[..., Any], backend: Backend) -> None:
        if task.state is not _PENDING:  # cancelled while it waited
            return
        ledger = self.ledger
        cancelled_exc = backend.cancelled_exc
        with anyio.CancelScope() as scope:
            task._runner = scope
            ledger.start(task)
            try:
                error = await anyio.to_thread.run_sync(
                    self._thread_main, task, limiter=self.limiter, abandon_on_cancel=True
                )
            except cancelled_exc:
                with self._lock:
                    thread_state = task._thread_state
                    if thread_state != _FINISHED:
                        task._thread_state = _ABANDONED
                if thread_state == _FINISHED:  # it completed just as we were cancelled
                    self._record(task, task.error, backend)
                elif thread_state == _NOT_STARTED:
                    ledger.finish(task, _CANCELLED)
                # else: still running in its thread; it reports back when it returns.
                return
        self._record(task, error, backend)

    def _record(self, task: Task[..., Any], error: BaseException | None, backend: Backend) -> None:
        """Account for a sync task whose function returned or raised (loop thread)."""
        if error is None:
            self.ledger.finish(task, _SUCCEEDED)
        elif isinstance(error, backend.cancelled_exc):  # it obeyed check_cancelled()
            self.ledger.finish(task, _CANCELLED)
        elif task.config.on_error is None or task.done():
            task.context.run(log_failure, task, error)
            self.ledger.finish(task, _FAILED, error)
        else:  # the handler runs as a task of its own, in the failed task's context
            backend.spawn(self._handle, task, error, backend, context=task.context)

    async def _handle(self, task: Task[..., Any], error: BaseException, backend: Backend) -> None:
        try:
            await handle_failure(task, error, self.limiter, backend.cancelled_exc)
        finally:
            self.ledger.finish(task, _FAILED, error)

    # ---------------------------------------------------------------- worker threads
    def _thread_main(self, task: Task[..., Any]) -> BaseException | None:
        """Runs in a worker thread. Returns the error instead of raising it (a ``SystemExit``
        raised through the event loop would stop the whole server)."""
        with self._lock:
            if task._thread_state == _ABANDONED:
                return None
            task._thread_state = _IN_THREAD
        error: BaseException | None = None
        context = task.context
        sniffio = sys.modules.get("sniffio")
        if sniffio is not None:  # as anyio marks its worker threads: no async library here
            context.run(sniffio.current_async_library_cvar.set, None)
        try:
            result = context.run(task.func, *task.args, **task.kwargs)
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                error = TypeError(
                    f"{callable_name(task.func)} returned an awaitable; declare it 'async def' "
                    "so that it runs on the event loop"
                )
            else:
                task._result = result
        except BaseException as exc:  # noqa: BLE001 - contained and reported below
            error = exc
        task.error = error
        with self._lock:
            abandoned = task._thread_state == _ABANDONED
            task._thread_state = _FINISHED
        if abandoned:
            backend = task._backend
            if backend is None or not backend.call_soon_threadsafe(self._late, task, error):
                logger.warning(
                    "fastapi-tasks: %s finished in its thread after the event loop closed",
                    task.name,
                )
        return error

    def _late(self, task: Task[..., Any], error: BaseException | None) -> None:
        """A thread finished after its carrier stopped waiting for it (shutdown)."""
        backend = task._backend
        assert backend is not None
        if not task.done():
            self._record(task, error, backend)
        elif task._abandoned_at is not None:
            self.ledger.finish(task, _FAILED if error is not None else _SUCCEEDED)
