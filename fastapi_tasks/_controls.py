"""The controlled run path: timeouts, retries and concurrency limits, and ``task.cancel()``.

A task whose merged :class:`~._config.TaskConfig` sets ``timeout``, ``retry`` or ``limit`` (and
every async task of a runtime with ``async_limit``) is handed here by
:meth:`~._runtime.TaskRuntime.submit` instead of taking the short path; the decision is one
attribute read per task (``config.controlled``), so tasks without controls pay nothing else.

Each controlled task is one native task running :meth:`ControlledRun.main` in the task's
context, with a :class:`ControlledRun` as the task's canceller:

1. **Slots** (``_limits``): the task takes a slot of its name's limit and of ``async_limit``
   now if one is free, else queues for it in FIFO order. Queued tasks are ``pending`` and
   counted in ``waiting`` (bounded by ``max_pending``). A sync task then borrows one of the
   runtime's threads for each attempt.
2. **Attempts**: :meth:`ControlledRun.attempt` is the one place where an attempt starts and
   ends, with its number (``attempt_observer`` hooks in there, e.g. for tracing). With a
   ``timeout``, an async attempt still running at its deadline is cancelled; a sync one is
   left to finish in its thread (it can see the cancellation through
   ``anyio.from_thread.check_cancelled()``) and its slot is given back at once. Either ends the
   attempt with ``FastAPITasksTimeoutError``.
3. **Retries** (``_retry``): a failed attempt the policy covers is followed, after a backoff
   sleep, by another; ``retried`` counts them. ``on_error`` runs once, after the last attempt.
   The task stays ``running`` (and keeps its limit slots) between attempts; the sleep is
   cancelled at shutdown unless the task is shielded.

The task is counted once in ``scheduled`` and once in its outcome, like every other task.
"""

from __future__ import annotations

import inspect
import math
import threading
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._callables import callable_name
from ._failures import handle_failure
from ._limits import Slots, Waiter
from ._log import logger
from ._stats import notify
from ._task import Task, TaskState
from .errors import FastAPITasksQueueFullError, FastAPITasksTimeoutError

if TYPE_CHECKING:
    from ._backend import Backend, Canceller
    from ._runtime import TaskRuntime

__all__ = ["AttemptObserver", "ControlledRun", "Controls"]

_PENDING = TaskState.PENDING
_RUNNING = TaskState.RUNNING
_SUCCEEDED = TaskState.SUCCEEDED
_FAILED = TaskState.FAILED
_CANCELLED = TaskState.CANCELLED


class AttemptObserver(Protocol):
    """Told when each attempt of a controlled task starts and ends (in the task's context, on
    the event loop thread). Must be quick and must not raise.

    A task without controls has exactly one attempt, whose start and end are the
    ``TaskObserver.started`` / ``finished`` calls of the ledger (also made in the task's
    context for async tasks); for a controlled task those mark its first start and its final
    outcome, around all of its attempts."""

    def attempt_started(self, task: Task[..., Any], attempt: int) -> None: ...

    def attempt_finished(
        self, task: Task[..., Any], attempt: int, error: BaseException | None
    ) -> None: ...


class Controls:
    """The controlled path of one runtime: its limit slots and how a task is cancelled."""

    def __init__(self, runtime: TaskRuntime, async_limit: int | None) -> None:
        self.runtime = runtime
        #: ``add_tasks(async_limit=N)``: async tasks running at once, or ``None``.
        self.async_limit = async_limit
        #: Hook for tracing: see :meth:`ControlledRun.attempt`.
        self.attempt_observer: AttemptObserver | None = None
        self.async_slots = Slots()
        self.name_slots: dict[str, Slots] = {}
        self._unbounded: anyio.CapacityLimiter | None = None

    def reset(self) -> None:
        """Forget the slots of a previous run (the lifespan starts)."""
        self.async_slots = Slots()
        self.name_slots = {}
        self._unbounded = None

    def unbounded(self) -> anyio.CapacityLimiter:
        """A limiter that never blocks: a controlled sync task borrows the runtime's thread
        token itself, and hands the call to anyio with this one."""
        if self._unbounded is None:
            self._unbounded = anyio.CapacityLimiter(math.inf)
        return self._unbounded

    # ---------------------------------------------------------------- admission
    def submit(self, task: Task[..., Any], deferred: bool = False) -> Task[..., Any]:
        """Admit a controlled task and start it (see the module docstring). Any thread.

        :raises FastAPITasksShutdownError: if shutdown began.
        :raises FastAPITasksQueueFullError: if it would wait for a slot or a thread while
            ``max_pending`` tasks already do.
        """
        runtime = self.runtime
        if not runtime.on_loop_thread():
            return runtime.call_on_loop(self.submit, task, deferred)
        runtime.check_admission()
        backend = runtime._backend_here()
        config = task.config
        limit = config.limit
        name_slots: Slots | None = None
        would_wait = False
        if limit is not None:
            name = task.name
            name_slots = self.name_slots.get(name)
            if name_slots is None:
                name_slots = self.name_slots[name] = Slots()
            would_wait = bool(name_slots.waiters) or name_slots.held >= limit
        async_limit = self.async_limit if task.is_async else None
        if async_limit is not None:
            slots = self.async_slots
            would_wait = would_wait or bool(slots.waiters) or slots.held >= async_limit
        if not task.is_async:
            threads = runtime.threads
            limiter = threads.limiter
            would_wait = would_wait or not threads.has_free_slot()
            if limiter is not None and limiter.available_tokens < 1:
                would_wait = True
        counters = runtime.counters
        max_pending = runtime.max_pending
        if (
            would_wait
            and not deferred
            and max_pending is not None
            and counters.waiting >= max_pending
        ):
            runtime.count_refused("rejected")
            raise FastAPITasksQueueFullError(
                f"{counters.waiting} tasks are already waiting for a thread or a limit slot "
                f"(max_pending={max_pending}); try again later or raise max_pending"
            )
        runtime.ledger.admit(task)
        task._backend = backend
        run = ControlledRun(self, task, backend, name_slots, limit, async_limit)
        task._runner = run
        if would_wait:
            run.set_waiting(True)
        run.take_slots_now()
        run.native = backend.spawn(run.main, context=task.context)
        return task

    # ---------------------------------------------------------------- cancel
    def cancel_task(self, task: Task[..., Any]) -> bool:
        """``task.cancel()`` of an admitted task: see :meth:`~._task.Task.cancel`. Any thread."""
        runtime = self.runtime
        if not runtime.on_loop_thread():
            result: bool = runtime.call_on_loop(self.cancel_task, task)
            return result
        if task.done():
            return False
        if not task.is_async:
            if task.state is _RUNNING:  # its thread cannot be interrupted: mark it cancelled
                runner = task._runner
                runtime.ledger.expect_cancel(task)
                runtime.ledger.finish(task, _CANCELLED)
                if runner is not None:
                    runner.cancel()
                return True
            backlog = runtime.threads.backlog
            if task in backlog:  # waiting for a thread in the plain pool
                backlog.remove(task)
                runtime.counters.waiting -= 1
        runtime.cancel(task)
        return True


class ControlledRun:
    """One controlled task: its slots, its attempts, and its canceller (``task._runner``)."""

    __slots__ = (
        "async_held",
        "async_limit",
        "async_waiter",
        "backend",
        "cancel_requested",
        "controls",
        "limit",
        "name_held",
        "name_slots",
        "name_waiter",
        "native",
        "scope",
        "task",
        "thread_held",
        "thread_wait",
        "waiting",
    )

    def __init__(
        self,
        controls: Controls,
        task: Task[..., Any],
        backend: Backend,
        name_slots: Slots | None,
        limit: int | None,
        async_limit: int | None,
    ) -> None:
        self.controls = controls
        self.task = task
        self.backend = backend
        self.name_slots = name_slots
        self.limit = limit
        self.async_limit = async_limit
        self.name_held = False
        self.name_waiter: Waiter | None = None
        self.async_held = False
        self.async_waiter: Waiter | None = None
        self.thread_held = False
        self.waiting = False
        self.cancel_requested = False
        self.scope: anyio.CancelScope | None = None
        self.thread_wait: anyio.CancelScope | None = None
        self.native: Canceller | None = None

    # ---------------------------------------------------------------- slots (loop thread)
    def set_waiting(self, waiting: bool) -> None:
        if waiting != self.waiting:
            self.waiting = waiting
            self.controls.runtime.counters.waiting += 1 if waiting else -1

    def take_slots_now(self) -> None:
        """Take free slots, or queue for them, in scheduling order."""
        if self.name_slots is not None and self.limit is not None:
            if self.name_slots.try_take(self.limit):
                self.name_held = True
            else:
                self.name_waiter = self.name_slots.queue(self.limit)
                return  # the async slot is asked for once this one is granted
        self._ask_async_slot()

    def _ask_async_slot(self) -> None:
        if self.async_limit is not None:
            slots = self.controls.async_slots
            if slots.try_take(self.async_limit):
                self.async_held = True
            else:
                self.async_waiter = slots.queue(self.async_limit)

    async def _wait_for_slots(self) -> bool:
        """Wait for the slots queued for; ``False`` if the task was cancelled meanwhile."""
        waiter = self.name_waiter
        if waiter is not None:
            await waiter.wait()
            if self.name_waiter is not waiter:  # withdrawn by cancel(): the slot went back
                await anyio.lowlevel.checkpoint()  # where the cancellation is delivered
                return False
            self.name_waiter = None
            self.name_held = True
            if self.async_limit is not None:
                self._ask_async_slot()
                if self.async_waiter is not None:
                    self.set_waiting(True)
        waiter = self.async_waiter
        if waiter is not None:
            await waiter.wait()
            if self.async_waiter is not waiter:
                await anyio.lowlevel.checkpoint()
                return False
            self.async_waiter = None
            self.async_held = True
        return True

    async def _take_thread(self) -> None:
        limiter = self.controls.runtime.threads.limiter
        assert limiter is not None
        try:
            limiter.acquire_on_behalf_of_nowait(self.task)
        except anyio.WouldBlock:
            if self.task.state is _PENDING:
                self.set_waiting(True)
            await limiter.acquire_on_behalf_of(self.task)
        self.thread_held = True

    def _give_thread(self) -> None:
        if self.thread_held:
            self.thread_held = False
            limiter = self.controls.runtime.threads.limiter
            if limiter is not None:
                limiter.release_on_behalf_of(self.task)

    def _leave_queues(self) -> None:
        """Give up the places in the slot queues (the task was cancelled)."""
        waiter = self.name_waiter
        if waiter is not None and self.name_slots is not None:
            self.name_waiter = None
            self.name_slots.withdraw(waiter)
        waiter = self.async_waiter
        if waiter is not None:
            self.async_waiter = None
            self.controls.async_slots.withdraw(waiter)
        self.set_waiting(False)

    def _release(self) -> None:
        self._leave_queues()
        self._give_thread()
        if self.name_held and self.name_slots is not None:
            self.name_held = False
            self.name_slots.give_back()
        if self.async_held:
            self.async_held = False
            self.controls.async_slots.give_back()

    # ---------------------------------------------------------------- cancel (Canceller)
    def cancel(self) -> None:
        """Called by the runtime (shutdown, ``task.cancel()``, the deadline): leave the slot
        queues at once, and cancel whatever the task is doing."""
        self.cancel_requested = True
        self._leave_queues()
        if self.scope is not None:
            self.scope.cancel()
        if self.thread_wait is not None:  # waiting for a thread at shutdown: given up
            self.thread_wait.cancel()

    # ---------------------------------------------------------------- the native task
    async def main(self) -> None:
        task = self.task
        cancelled_exc = self.backend.cancelled_exc
        ledger = self.controls.runtime.ledger
        try:
            with anyio.CancelScope() as scope:
                self.scope = scope
                if self.cancel_requested:
                    scope.cancel()
                if task.state is not _PENDING:  # cancelled before it could start
                    return
                try:
                    await self._run()
                except cancelled_exc:
                    ledger.finish(task, _CANCELLED)  # a second outcome is ignored
                    raise
        except BaseException as exc:  # noqa: BLE001 - the runtime survives anything
            if not isinstance(exc, cancelled_exc):
                logger.exception("fastapi-tasks: internal error while running %r", task)
            if not task.done():
                ledger.finish(task, _CANCELLED)
        finally:
            self.scope = None
            self._release()

    async def _run(self) -> None:
        task = self.task
        controls = self.controls
        runtime = controls.runtime
        ledger = runtime.ledger
        cancelled_exc = self.backend.cancelled_exc
        retry = task.config.retry
        is_async = task.is_async
        if not await self._wait_for_slots():
            return
        attempt = 0
        while True:
            attempt += 1
            if not is_async:
                await self._take_thread()
            if attempt == 1:
                self.set_waiting(False)
                ledger.start(task)
            task._attempts = attempt
            try:
                value, error = await self.attempt(attempt)
            finally:
                self._give_thread()
            if error is None:
                task._result = value
                ledger.finish(task, _SUCCEEDED)
                return
            if (
                retry is not None
                and not self.cancel_requested
                and not task.done()
                and retry.should_retry(error, attempt)
            ):
                delay = retry.delay(attempt)
                runtime.counters.retried += 1
                notify(runtime.observer, "retried", task)
                logger.warning(
                    "fastapi-tasks: task %r attempt %d of %d failed with %s; retrying in %.3gs",
                    task.name,
                    attempt,
                    retry.attempts,
                    type(error).__name__,
                    delay,
                )
                await anyio.sleep(delay)
                continue
            if not task.done():
                await handle_failure(task, error, runtime.threads.limiter, cancelled_exc)
            ledger.finish(task, _FAILED, error)
            return

    async def attempt(self, attempt: int) -> tuple[Any, BaseException | None]:
        """Run attempt number ``attempt`` (1-based) of the task and return ``(value, None)``
        or ``(None, error)``; the task's own cancellation propagates.

        This is the one place where an attempt of a controlled task starts and ends:
        :attr:`Controls.attempt_observer` is told here, in the task's context.
        """
        task = self.task
        observer = self.controls.attempt_observer
        if observer is not None:
            observer.attempt_started(task, attempt)
        error: BaseException | None = None
        try:
            if task.is_async:
                value = await self._call_async()
            else:
                value = await self._call_sync()
        except self.backend.cancelled_exc as exc:
            error = exc
            raise
        except BaseException as exc:  # noqa: BLE001 - the attempt's outcome
            error = exc
            return None, exc
        finally:
            if observer is not None:
                observer.attempt_finished(task, attempt, error)
        return value, None

    async def _call_async(self) -> Any:
        task = self.task
        timeout = task.config.timeout
        if timeout is None or timeout == math.inf:
            return await task.func(*task.args, **task.kwargs)
        scope = anyio.CancelScope(deadline=anyio.current_time() + timeout)
        try:
            with scope:
                value = await task.func(*task.args, **task.kwargs)
        except self.backend.cancelled_exc:
            raise  # not ours: the task itself was cancelled
        except BaseException as exc:
            if scope.cancel_called:
                raise _timed_out(task, timeout) from exc
            raise
        if scope.cancelled_caught:
            raise _timed_out(task, timeout)
        return value

    async def _call_sync(self) -> Any:
        task = self.task
        timeout = task.config.timeout
        call = _ThreadCall(task, self.backend)
        scope = anyio.CancelScope()
        if timeout is not None and timeout != math.inf:
            scope.deadline = anyio.current_time() + timeout
        limiter = self.controls.unbounded()
        try:
            with scope:
                await anyio.to_thread.run_sync(call, limiter=limiter, abandon_on_cancel=True)
        except self.backend.cancelled_exc:
            if self.task.done():
                # Marked cancelled (task.cancel(), or given up at the shutdown deadline): its
                # thread finishes on its own.
                raise
            if call.notify_when_done():
                # Shutdown cancelled it: like the thread pool, wait for its thread (the
                # function sees the cancellation through check_cancelled()) unless the
                # deadline gives up on it.
                with anyio.CancelScope(shield=True) as wait:
                    self.thread_wait = wait
                    await call.finished_event().wait()
                self.thread_wait = None
                if wait.cancel_called:
                    raise
            self.cancel_requested = True  # no further attempt
            return call.outcome()
        if scope.cancelled_caught:
            assert timeout is not None
            raise _timed_out(task, timeout)
        return call.outcome()


def _timed_out(task: Task[..., Any], timeout: float) -> FastAPITasksTimeoutError:
    return FastAPITasksTimeoutError(
        f"task {task.name!r} was still running after its timeout of {timeout:g}s"
    )


class _ThreadCall:
    """A sync attempt's call in a worker thread, and the hand-off of its outcome to the loop
    when the loop side stopped waiting for it (shutdown)."""

    __slots__ = ("_done", "_event", "_lock", "_notify", "backend", "error", "task", "value")

    def __init__(self, task: Task[..., Any], backend: Backend) -> None:
        self.task = task
        self.backend = backend
        self.value: Any = None
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._done = False
        self._notify = False
        self._event: anyio.Event | None = None

    def __call__(self) -> None:  # in the worker thread
        task = self.task
        try:
            value = task.func(*task.args, **task.kwargs)
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()
                raise TypeError(
                    f"{callable_name(task.func)} returned an awaitable; declare it 'async "
                    "def' so that it runs on the event loop"
                )
            self.value = value
        except BaseException as exc:  # noqa: BLE001 - handed to the loop
            self.error = exc
        with self._lock:
            self._done = True
            notify = self._notify
        if notify:
            self.backend.call_soon_threadsafe(self._set_finished)

    def notify_when_done(self) -> bool:
        """Ask to be told when the thread returns; ``False`` if it already has."""
        with self._lock:
            if self._done:
                return False
            self._notify = True
            return True

    def finished_event(self) -> anyio.Event:
        if self._event is None:
            self._event = anyio.Event()
        return self._event

    def _set_finished(self) -> None:
        self.finished_event().set()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value
