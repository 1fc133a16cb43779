"""The task runtime: admission, the async worker pool, the sync thread pool and error routing.

Design notes
------------
* Async callables run on long-lived worker tasks in the runtime's task group. A worker that
  finishes a task parks itself on a fresh waiter. ``schedule()`` queues the task in ``ready``
  and, unless a wake-up is already on its way, wakes one parked worker, which drains the whole
  batch (a few microseconds in all). Only when none is parked does a loop callback (the "kick")
  ask a spawner task for a new worker (``start_soon``, ~25 us). At most ``MAX_IDLE_WORKERS``
  workers stay parked; extra ones exit.
* Sync callables wait in a FIFO queue and are run by at most ``thread_limit`` carrier tasks, each
  calling :func:`anyio.to_thread.run_sync` with the runtime's own :class:`anyio.CapacityLimiter`.
  The threads FastAPI uses for ``def`` endpoints (anyio's default limiter) are never touched, and
  queued sync tasks cost a ``deque`` slot each, not a task.
* Every counter and queue is mutated on the event loop thread only. Calls from other threads
  (``def`` endpoints, sync tasks) hop to the loop with :func:`anyio.from_thread.run_sync`.
* A task's failure is contained: any ``BaseException`` that is not a cancellation is logged with
  the task's name and function (never its arguments), the ``on_error`` handler is called for
  ``Exception`` subclasses, and a failing handler is logged too. Workers never die of it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from ._backend import Backend, Waiter, current_backend
from ._config import TaskConfig
from ._stats import Counters, RuntimeState, TaskObserver, TaskStats
from ._task import Task, TaskState, callable_name, is_async_callable
from .errors import (
    FastAPITasksQueueFullError,
    FastAPITasksShutdownError,
    FastAPITasksUninitializedAppError,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import TaskGroup

    from ._durable import DurableBackend

__all__ = ["TaskRuntime", "logger"]

logger = logging.getLogger("fastapi_tasks")

R = TypeVar("R")

#: Parked async workers kept for reuse; a worker finishing beyond this many exits instead.
MAX_IDLE_WORKERS = 512

# Task.thread_state values: the hand-off between a carrier and its worker thread.
_NOT_STARTED, _IN_THREAD, _FINISHED, _ABANDONED = 0, 1, 2, 3

_PENDING = TaskState.PENDING
_RUNNING = TaskState.RUNNING
_SUCCEEDED = TaskState.SUCCEEDED
_FAILED = TaskState.FAILED
_CANCELLED = TaskState.CANCELLED


class TaskRuntime:
    """Runs tasks for one application. Created by ``add_tasks()``; started by the lifespan."""

    def __init__(
        self,
        *,
        config: TaskConfig,
        thread_limit: int,
        max_pending: int | None = None,
    ) -> None:
        self.config = config
        self.thread_limit = thread_limit
        self.max_pending = max_pending
        self.counters = Counters()
        self.state: RuntimeState = "idle"
        self.live: set[Task[..., Any]] = set()
        self.sync_queue: deque[Task[..., Any]] = deque()
        self.tg: TaskGroup | None = None
        self.limiter: anyio.CapacityLimiter | None = None
        self.ready: deque[Task[..., Any]] = deque()
        self._idle: list[Waiter] = []
        self._early: list[Task[..., Any]] = []
        self._backend: Backend | None = None
        #: A wake-up for ``ready`` is on its way: a kick is scheduled, or a parked worker was
        #: woken for ``ready`` and has not resumed yet. While set, queuing more wakes nobody.
        self._kick_pending = False
        self._spawns_requested = 0
        self._spawner_waiter: Waiter | None = None
        self._accepting = False
        self._carriers = 0
        self._loop_thread: int | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._cancelled_exc: type[BaseException] = BaseException
        self._lock = threading.Lock()
        self._idle_event: anyio.Event | None = None
        #: Set by ``fastapi_tasks.testing.capture_tasks``: record tasks instead of running them.
        self.capture: Callable[[Task[..., Any], str], None] | None = None
        #: Set by ``fastapi_tasks.prometheus.instrument``: told about every accounting event.
        self.observer: TaskObserver | None = None
        #: Set by ``fastapi_tasks.taskiq.add_durable_broker``: the queue ``tasks.durable`` uses.
        self.durable: DurableBackend | None = None

    # ---------------------------------------------------------------- lifecycle
    def prepare(self) -> None:
        """Start accepting work (state ``starting``): call on the event loop thread when the
        lifespan begins, before the application's own startup code runs. Tasks scheduled
        from that startup code wait, counted as pending, until :meth:`serving` starts them."""
        if self.state in ("starting", "running", "draining"):
            raise RuntimeError("this task runtime is already running (one lifespan at a time)")
        self.counters = Counters()
        self.live = set()
        self.sync_queue = deque()
        self.ready = deque()
        self._early = []
        self._idle = []
        self._kick_pending = False
        self._spawns_requested = 0
        self._spawner_waiter = None
        self._carriers = 0
        self._idle_event = None
        self.limiter = anyio.CapacityLimiter(self.thread_limit)
        self._cancelled_exc = anyio.get_cancelled_exc_class()
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        self._backend = current_backend()
        self.state = "starting"
        self._accepting = True

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Own the task group and run tasks inside the block (the drain is the caller's job)."""
        if self.state != "starting":
            self.prepare()
        try:
            async with anyio.create_task_group() as tg:
                self.tg = tg
                tg.start_soon(self._spawner, name="fastapi-tasks spawner")
                self.state = "running"
                early, self._early = self._early, []
                for task in early:
                    self._dispatch(task)
                yield
        finally:
            self.stop()

    def stop(self) -> None:
        """Refuse work from now on; whatever was never started is counted as cancelled."""
        self._accepting = False
        self.state = "stopped"
        self.tg = None
        self._finish_leftovers()

    def on_loop_thread(self) -> bool:
        return self._loop_thread == threading.get_ident()

    def call_on_loop(self, func: Callable[..., R], *args: Any) -> R:
        """Call ``func(*args)`` on the event loop thread, from any thread, and return its result.

        :raises FastAPITasksShutdownError: from another thread once the loop is gone.
        """
        if self._loop_thread == threading.get_ident():
            return func(*args)
        token = self._token
        if token is None or self.state == "stopped":
            self._reject_off_loop()
        try:
            return anyio.from_thread.run_sync(func, *args, token=token)
        except RuntimeError as exc:
            if isinstance(exc, (FastAPITasksShutdownError, FastAPITasksQueueFullError)):
                raise
            raise FastAPITasksShutdownError(
                "the application's event loop is no longer running; the task was not scheduled"
            ) from exc

    def _reject_off_loop(self) -> None:
        if self.state == "idle":
            raise FastAPITasksUninitializedAppError(
                "the fastapi-tasks runtime is not running: call add_tasks(app) and run the app's "
                "lifespan (uvicorn does; in tests use 'with TestClient(app)' or LifespanManager)"
            )
        self.count_refused("rejected")
        raise FastAPITasksShutdownError(
            "the application is shutting down: new tasks are not accepted"
        )

    # ---------------------------------------------------------------- admission
    def close_admission(self) -> None:
        """From now on every ``schedule()`` raises ``FastAPITasksShutdownError``."""
        self._accepting = False
        self.state = "draining"

    def check_admission(self) -> None:
        """Raise (and count a rejection) unless new work is accepted right now. Loop thread."""
        if not self._accepting:
            if self.state == "idle":
                raise FastAPITasksUninitializedAppError(
                    "the fastapi-tasks runtime is not running: call add_tasks(app) and run the "
                    "app's lifespan (uvicorn does; in tests use 'with TestClient(app)' or an "
                    "ASGI lifespan manager)"
                )
            self.count_refused("rejected")
            raise FastAPITasksShutdownError(
                "the application is shutting down: new tasks are not accepted"
            )
        max_pending = self.max_pending
        if max_pending is not None and self.counters.pending >= max_pending:
            self.count_refused("rejected")
            raise FastAPITasksQueueFullError(
                f"{self.counters.pending} tasks are already waiting to start "
                f"(max_pending={max_pending}); try again later or raise max_pending"
            )

    def count_refused(self, outcome: Literal["rejected", "discarded"], count: int = 1) -> None:
        """Count tasks refused at ``schedule()`` (rejected) or dropped because their request
        failed (discarded)."""
        if outcome == "rejected":
            self.counters.rejected += count
        else:
            self.counters.discarded += count
        if self.observer is not None:
            self.observer.refused(outcome, count)

    def submit(self, task: Task[..., Any]) -> Task[..., Any]:
        """Admit ``task`` and start it now. Safe from any thread.

        :raises FastAPITasksShutdownError: if shutdown began.
        :raises FastAPITasksQueueFullError: if ``max_pending`` tasks are already waiting.
        :raises FastAPITasksUninitializedAppError: if the lifespan has not started.
        """
        if self._loop_thread != threading.get_ident():
            return self.call_on_loop(self.submit, task)
        if not self._accepting or self.max_pending is not None:  # the common case skips a call
            self.check_admission()
        counters = self.counters
        counters.scheduled += 1
        counters.pending += 1
        self.live.add(task)
        task._limiter = self.limiter
        if self.observer is not None:
            self.observer.scheduled(task)
        if self.tg is None:  # scheduled by the app's startup code: started by serving()
            self._early.append(task)
        else:
            self._dispatch(task)
        return task

    def _dispatch(self, task: Task[..., Any]) -> None:
        if not task.is_async:
            self.sync_queue.append(task)
            if self._carriers < self.thread_limit:
                self._carriers += 1
                assert self.tg is not None
                self.tg.start_soon(self._sync_carrier, name="fastapi-tasks thread carrier")
        elif task.config.shield is True:
            self._wake_worker(task)  # shielded tasks skip the shared queue: see _async_worker
        else:
            self.ready.append(task)
            if not self._kick_pending:
                # Nobody is on the way to ``ready`` yet: wake a parked worker right here (it
                # drains the whole batch), or let the kick ask the spawner for a new one.
                self._kick_pending = True
                if not self._wake_idle(None):
                    assert self._backend is not None
                    self._backend.call_soon(self._kick)

    def _kick(self) -> None:
        """A loop turn later: if ``ready`` still holds tasks, wake a parked worker for them, or
        ask the spawner for a new one. Scheduled when no parked worker could be woken at once,
        and by a worker about to run a task while more are queued (if that task blocks, the
        rest must not wait for it).

        This runs as a bare event-loop callback, outside any task, where anyio cannot tell
        which async library is running (with sniffio installed): it must not call anyio. It
        only completes a parked worker's waiter or the spawner's.
        """
        self._kick_pending = False
        if not self.ready or not self._accepting:
            return
        if self._wake_idle(None):
            self._kick_pending = True  # until that worker resumes: it drains ``ready``
            return
        self._spawns_requested += 1
        waiter = self._spawner_waiter
        if waiter is not None:
            self._spawner_waiter = None
            waiter.set_result(None)

    def _wake_idle(self, task: Task[..., Any] | None) -> bool:
        idle = self._idle
        while idle:
            waiter = idle.pop()
            if not waiter.done():  # skip a waiter whose worker was cancelled
                waiter.set_result(task)
                return True
        return False

    def _wake_worker(self, task: Task[..., Any] | None) -> None:
        """Hand ``task`` to a parked worker, or start a new one. Call it from a task."""
        if not self._wake_idle(task):
            assert self.tg is not None
            self.tg.start_soon(self._async_worker, task, name="fastapi-tasks worker")

    async def _spawner(self) -> None:
        """Starts the workers that :meth:`_kick` asks for, from a proper task context."""
        backend = self._backend
        assert backend is not None and self.tg is not None
        while True:
            while self._spawns_requested:
                self._spawns_requested -= 1
                self.tg.start_soon(self._async_worker, None, name="fastapi-tasks worker")
            waiter = backend.new_waiter()
            self._spawner_waiter = waiter
            await waiter

    # ---------------------------------------------------------------- accounting
    def _finish(
        self, task: Task[..., Any], state: TaskState, error: BaseException | None = None
    ) -> None:
        previous = task.state
        counters = self.counters
        if previous is _RUNNING:
            counters.running -= 1
        elif previous is _PENDING:
            counters.pending -= 1
        else:
            return  # already final
        if state is _SUCCEEDED:
            counters.succeeded += 1
        elif state is _FAILED:
            counters.failed += 1
        else:
            counters.cancelled += 1
        self.live.discard(task)
        task._mark_finished(state, error)
        if self.observer is not None:
            self.observer.finished(task, state, previous is _RUNNING)
        if not self.live and self._idle_event is not None:
            self._idle_event.set()

    def _begin(self, task: Task[..., Any]) -> None:
        counters = self.counters
        counters.pending -= 1
        counters.running += 1
        task.state = _RUNNING
        task.started_at = time.monotonic()
        if task._started is not None:
            task._started.set()
        if self.observer is not None:
            self.observer.started(task)

    def abandon(self, task: Task[..., Any]) -> None:
        """Give up on ``task`` (shutdown deadline): count it cancelled and abandoned."""
        if task.done():
            return
        self.counters.abandoned += 1
        if task.scope is not None:
            task.scope.cancel()
        self._finish(task, _CANCELLED)

    def cancel_unstarted(self, *, include_shielded: bool) -> list[Task[..., Any]]:
        """Drop queued tasks that have not started (async ones waiting for a worker, sync ones
        waiting for a thread); shielded ones stay unless ``include_shielded``. Return them."""
        dropped = list(self.ready)  # only unshielded tasks go through ``ready``
        self.ready = deque()
        kept: deque[Task[..., Any]] = deque()
        for task in self.sync_queue:
            if task.shielded and not include_shielded:
                kept.append(task)
            else:
                dropped.append(task)
        self.sync_queue = kept
        for task in dropped:
            self._finish(task, _CANCELLED)
        return dropped

    async def wait_idle(self) -> None:
        """Wait until every admitted task has finished (loop thread)."""
        while self.live:
            if self._idle_event is None or self._idle_event.is_set():
                self._idle_event = anyio.Event()
            await self._idle_event.wait()

    def _finish_leftovers(self) -> None:
        # Safety net after the task group closed: nothing may stay unaccounted for.
        for task in list(self.live):
            logger.warning(
                "fastapi-tasks: %r never completed (the lifespan ended first); counted as "
                "cancelled",
                task,
            )
            self.counters.abandoned += 1
            self._finish(task, _CANCELLED)

    # ---------------------------------------------------------------- async workers
    async def _async_worker(self, task: Task[..., Any] | None) -> None:
        """A long-lived worker. It runs the shielded task it was handed (if any), then drains
        the shared ``ready`` queue one task after another, then parks until woken again.

        Running queued tasks back to back is what makes ``schedule()`` cheap: ten trivial tasks
        cost one wake-up, not ten. It does not delay anyone: before starting a task while more
        are queued, the worker asks for a kick on the next loop turn, so if this task blocks,
        another worker picks up the rest right away (on a cooperative loop a task that does not
        block would hold the loop anyway).
        """
        idle = self._idle
        cancelled_exc = self._cancelled_exc
        backend = self._backend
        assert backend is not None
        while True:
            if task is not None:
                await self._run_shielded(task)
            while self.ready:
                task = self.ready.popleft()
                if self.ready and not self._kick_pending:
                    self._kick_pending = True
                    backend.call_soon(self._kick)
                # The body of _run_async with _begin, inlined: this is the per-task hot path.
                counters = self.counters
                counters.pending -= 1
                counters.running += 1
                task.state = _RUNNING
                task.started_at = time.monotonic()
                if task._started is not None:
                    task._started.set()
                if self.observer is not None:
                    self.observer.started(task)
                try:
                    await task.func(*task.args, **task.kwargs)
                except cancelled_exc:
                    self._finish(task, _CANCELLED)
                except BaseException as exc:  # noqa: BLE001 - contained: logged and handled
                    await self._fail(task, exc)
                else:
                    self._finish(task, _SUCCEEDED)
            if not self._accepting or len(idle) >= MAX_IDLE_WORKERS:
                return
            waiter = backend.new_waiter()
            idle.append(waiter)
            try:
                task = await waiter
            except BaseException:
                # Cancelled while parked (shutdown). A shielded task handed over in the same
                # instant must still run.
                if waiter.done() and not waiter.cancelled():
                    orphan = waiter.result()
                    if orphan is None:
                        self._kick_pending = False  # it was woken for ``ready``: it won't come
                    else:
                        await self._run_shielded(orphan)
                raise
            if task is None:  # woken for ``ready``: the wake-up it stood for has arrived
                self._kick_pending = False

    async def _run_shielded(self, task: Task[..., Any]) -> None:
        with anyio.CancelScope(shield=True) as scope:
            task.scope = scope
            await self._run_async(task)

    async def _run_async(self, task: Task[..., Any]) -> None:
        self._begin(task)
        try:
            await task.func(*task.args, **task.kwargs)
        except self._cancelled_exc:
            self._finish(task, _CANCELLED)
        except BaseException as exc:  # noqa: BLE001 - contained: logged and handled
            await self._fail(task, exc)
        else:
            self._finish(task, _SUCCEEDED)

    # ---------------------------------------------------------------- sync tasks
    async def _sync_carrier(self) -> None:
        try:
            while self.sync_queue:
                await self._run_in_thread(self.sync_queue.popleft())
        finally:
            self._carriers -= 1

    async def _run_in_thread(self, task: Task[..., Any]) -> None:
        with anyio.CancelScope(shield=task.config.shield is True) as scope:
            task.scope = scope
            self._begin(task)
            try:
                error = await anyio.to_thread.run_sync(
                    self._thread_main, task, limiter=self.limiter, abandon_on_cancel=True
                )
            except self._cancelled_exc:
                with self._lock:
                    thread_state = task.thread_state
                    if thread_state != _FINISHED:
                        task.thread_state = _ABANDONED
                if thread_state == _FINISHED:  # it completed just as we were cancelled
                    self._record_thread_outcome(task, task.error)
                elif thread_state == _NOT_STARTED:
                    self._finish(task, _CANCELLED)
                # else: still running in its thread; it reports back when it returns.
                return
            if error is None:
                self._finish(task, _SUCCEEDED)
            elif isinstance(error, self._cancelled_exc):  # it obeyed check_cancelled()
                self._finish(task, _CANCELLED)
            else:
                await self._fail(task, error)

    def _thread_main(self, task: Task[..., Any]) -> BaseException | None:
        """Runs in a worker thread. Returns the error instead of raising it (a ``SystemExit``
        raised through the event loop would stop the whole server)."""
        with self._lock:
            if task.thread_state == _ABANDONED:
                return None
            task.thread_state = _IN_THREAD
        error: BaseException | None = None
        try:
            result = task.func(*task.args, **task.kwargs)
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                error = TypeError(
                    f"{callable_name(task.func)} returned an awaitable; declare it 'async def' "
                    "so that it runs on the event loop"
                )
        except BaseException as exc:  # noqa: BLE001 - contained and reported below
            error = exc
        task.error = error
        with self._lock:
            abandoned = task.thread_state == _ABANDONED
            task.thread_state = _FINISHED
        if abandoned:
            # If the event loop is gone, the task was counted as abandoned already.
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run_sync(
                    self._record_thread_outcome, task, error, token=self._token
                )
        return error

    def _record_thread_outcome(self, task: Task[..., Any], error: BaseException | None) -> None:
        """A thread finished after its carrier stopped waiting for it (shutdown)."""
        if task.done():
            logger.warning("%r finished in its thread after shutdown gave up on it", task)
            return
        if error is None:
            self._finish(task, _SUCCEEDED)
        elif isinstance(error, self._cancelled_exc):  # it obeyed check_cancelled()
            self._finish(task, _CANCELLED)
        else:
            self._log_failure(task, error)
            self._finish(task, _FAILED, error)

    # ---------------------------------------------------------------- failures
    def _log_failure(self, task: Task[..., Any], error: BaseException) -> None:
        logger.error(
            "Task %r (function %s) failed with %s",
            task.name,
            callable_name(task.func),
            type(error).__name__,
            exc_info=(type(error), error, error.__traceback__),
        )

    async def _fail(self, task: Task[..., Any], error: BaseException) -> None:
        self._log_failure(task, error)
        handler = task.config.on_error
        if handler is not None and isinstance(error, Exception):
            try:
                if is_async_callable(handler):
                    await handler(task, error)  # type: ignore[misc]
                else:
                    await anyio.to_thread.run_sync(
                        handler, task, error, limiter=self.limiter, abandon_on_cancel=True
                    )
            except self._cancelled_exc:
                logger.warning("The error handler of task %r was cancelled", task.name)
            except BaseException as handler_error:
                logger.error(
                    "The error handler %s of task %r raised %s",
                    callable_name(handler),
                    task.name,
                    type(handler_error).__name__,
                    exc_info=(type(handler_error), handler_error, handler_error.__traceback__),
                )
        self._finish(task, _FAILED, error)

    # ---------------------------------------------------------------- introspection
    def stats(self) -> TaskStats:
        """A consistent snapshot of the counters (taken on the loop thread when running)."""
        if self.state in ("starting", "running", "draining") and not self.on_loop_thread():
            try:
                return self.call_on_loop(self._snapshot)
            except Exception:  # noqa: BLE001 - fall back to a best-effort read
                pass
        return self._snapshot()

    def _snapshot(self) -> TaskStats:
        limiter = self.limiter
        busy = limiter.statistics().borrowed_tokens if limiter is not None else 0
        return self.counters.snapshot(self.state, self.thread_limit, busy)

    def running_tasks(self) -> Iterator[Task[..., Any]]:
        return (task for task in self.live if task.state is _RUNNING)
