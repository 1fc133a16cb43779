"""The task runtime of one application: its lifecycle, admission, and where each task goes.

* **Admission** (:meth:`TaskRuntime.submit`): refuse new work once shutdown began; refuse a sync
  task with ``FastAPITasksQueueFullError`` when ``max_pending`` tasks already wait for a thread.
  Async tasks start on the next loop turn and never wait for capacity, so ``max_pending``
  never refuses them. Admitted tasks are counted by the :class:`~._accounting.Ledger`.
* **Execution**: async tasks go to :class:`~._async_exec.AsyncRunner` (one native task each),
  sync tasks to :class:`~._threads.ThreadPool`. Failures are routed by ``_failures``.
* **Which loop**: a task runs on the event loop that is running where it was scheduled. That is
  the application's loop in production. A test suite that runs the lifespan on one event loop
  and its requests on another loop of the same thread (pytest-asyncio with a session-scoped
  lifespan fixture) gets its tasks run on the loop that is actually running.
* **Threads**: every counter and queue is touched on an event loop thread only. ``schedule()``
  from another thread (a ``def`` endpoint, a sync task) hops to its loop first.
"""

from __future__ import annotations

import sys
import threading
import weakref
from asyncio import get_running_loop as _get_running_loop
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

from ._accounting import Ledger
from ._async_exec import AsyncRunner
from ._backend import Backend, Canceller, backend_for_running_loop
from ._config import TaskConfig
from ._controls import Controls
from ._log import logger
from ._stats import Counters, RuntimeState, TaskObserver, TaskStats
from ._task import Task, TaskState
from ._threads import ThreadPool
from .errors import (
    FastAPITasksAppStartedError,
    FastAPITasksError,
    FastAPITasksQueueFullError,
    FastAPITasksShutdownError,
    FastAPITasksUninitializedAppError,
)

if TYPE_CHECKING:
    from ._durable import DurableBackend

__all__ = ["TaskRuntime"]

R = TypeVar("R")

_PENDING = TaskState.PENDING
_CANCELLED = TaskState.CANCELLED
_NOWHERE = object()  # never the running loop


class TaskRuntime:
    """Runs tasks for one application. Created by ``add_tasks()``; started by the lifespan."""

    def __init__(
        self,
        *,
        config: TaskConfig,
        thread_limit: int,
        max_pending: int | None = None,
        async_limit: int | None = None,
    ) -> None:
        self.config = config
        self.thread_limit = thread_limit
        self.max_pending = max_pending
        self.state: RuntimeState = "idle"
        self.ledger = Ledger()
        self.threads = ThreadPool(self.ledger, thread_limit)
        self.runner = AsyncRunner(self.ledger)
        self._accepting = False
        self._home: Backend | None = None
        self._home_loop: object = None
        self._create_task: Callable[..., Canceller] | None = None
        #: The short path of :meth:`submit`: while work is accepted, the home asyncio loop
        #: (else a marker that no loop is) and its ``create_task``.
        self._fast_loop: object = _NOWHERE
        self._create_native: Callable[..., Canceller] = _no_loop
        self._loop_thread: int | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._foreign: weakref.WeakKeyDictionary[Any, Backend] = weakref.WeakKeyDictionary()
        #: Set by ``fastapi_tasks.testing.capture_tasks``: record tasks instead of running them.
        self.capture: Callable[[Task[..., Any], str], None] | None = None
        #: Set by ``fastapi_tasks.taskiq.add_durable_broker``: the queue ``tasks.durable`` uses.
        self.durable: DurableBackend | None = None
        #: Timeouts, retries, limits and ``Task.cancel()`` (see ``_controls``).
        self.controls = Controls(self, async_limit)

    # ---------------------------------------------------------------- shortcuts
    @property
    def counters(self) -> Counters:
        return self.ledger.counters

    @property
    def live(self) -> set[Task[..., Any]]:
        return self.ledger.live

    @property
    def observer(self) -> TaskObserver | None:
        return self.ledger.observer

    @observer.setter
    def observer(self, observer: TaskObserver | None) -> None:
        self.ledger.observer = observer

    @property
    def accepting(self) -> bool:
        """Whether ``schedule()`` accepts new work right now."""
        return self._accepting

    @property
    def home(self) -> Backend | None:
        """The backend of the loop the lifespan runs on (``None`` before it starts)."""
        return self._home

    @property
    def limiter(self) -> anyio.CapacityLimiter | None:
        return self.threads.limiter

    # ---------------------------------------------------------------- lifecycle
    def prepare(self) -> None:
        """Start accepting and running work (state ``starting``): call on the event loop thread
        when the lifespan begins, before the application's own startup code runs, so that
        startup code may schedule tasks (and wait for them)."""
        if self.state in ("starting", "running", "draining"):
            raise FastAPITasksAppStartedError(
                "this task runtime is already running (one lifespan at a time)"
            )
        self.ledger.reset()
        self.threads.reset()
        self.runner.limiter = self.threads.limiter
        self._home = backend_for_running_loop()
        self._home.owner = self.controls
        self.controls.reset()
        self._home_loop = getattr(self._home, "loop", None)
        self._create_task = getattr(self._home_loop, "create_task", None)
        if sys.version_info < (3, 11):  # pragma: no cover - no context= parameter there
            self._create_task = None
        if self.controls.async_limit is not None:  # every async task takes the controlled path
            self._create_task = None
        self._foreign = weakref.WeakKeyDictionary()
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        self.state = "starting"
        self._set_accepting(True)

    def _set_accepting(self, accepting: bool) -> None:
        self._accepting = accepting
        if accepting and self._create_task is not None:
            self._fast_loop = self._home_loop
            self._create_native = self._create_task
        else:
            self._fast_loop = _NOWHERE

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """The application is serving inside the block (state ``running``). On the way out,
        whatever the drain left is given up (see :meth:`stop`)."""
        if self.state != "starting":
            self.prepare()
        self.state = "running"
        try:
            yield
        finally:
            self.stop()

    def stop(self) -> None:
        """Refuse work from now on. A task still live (the drain did not run, as when the
        app's startup failed, or it was cut short) is cancelled and counted as abandoned."""
        self._set_accepting(False)
        self.state = "stopped"
        self.ledger.closing = True
        for task in list(self.ledger.live):
            logger.warning(
                "fastapi-tasks: %r was still %s when the lifespan ended; cancelled and "
                "counted as abandoned",
                task,
                task.state.value,
            )
            self.ledger.abandon(task)
        self.threads.cancel_waiting(include_shielded=True)

    def close_admission(self) -> None:
        """From now on every ``schedule()`` raises ``FastAPITasksShutdownError``."""
        self._set_accepting(False)
        self.state = "draining"
        self.ledger.closing = True

    def cancel(self, task: Task[..., Any]) -> None:
        """Cancel ``task``: one that has not started ends ``cancelled`` at once (it never
        starts); a running one gets a cancellation at its next ``await`` (a sync one is told
        through ``anyio.from_thread.check_cancelled()``). Loop thread."""
        runner = task._runner
        if task.state is _PENDING:
            self.ledger.finish(task, _CANCELLED)
        elif runner is not None:
            self.ledger.expect_cancel(task)
        if runner is not None:
            runner.cancel()

    # ---------------------------------------------------------------- threads and loops
    def on_loop_thread(self) -> bool:
        return self._loop_thread == threading.get_ident()

    def call_on_loop(self, func: Callable[..., R], *args: Any) -> R:
        """Call ``func(*args)`` on an event loop thread, from any thread, and return its result.

        From a worker thread started by anyio (a ``def`` endpoint, a sync task) that is the
        loop the thread belongs to; from any other thread, the application's loop.

        :raises FastAPITasksShutdownError: once the loop is gone.
        """
        if self._loop_thread == threading.get_ident():
            return func(*args)
        if self._token is None:
            self._reject()
        try:
            outcome = anyio.from_thread.run_sync(_capture, func, args)
        except RuntimeError:  # not an anyio worker thread: use the application's loop
            try:
                outcome = anyio.from_thread.run_sync(_capture, func, args, token=self._token)
            except RuntimeError as exc:
                raise FastAPITasksShutdownError(
                    "the application's event loop is no longer running; the task was not scheduled"
                ) from exc
        ok, value = outcome
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def _backend_here(self) -> Backend:
        """The backend of the loop running in this thread: the home loop's, or one made for a
        loop a test suite runs its requests on."""
        home = self._home
        if home is None:
            return self._reject()  # type: ignore[no-any-return]
        if home.owns_running_loop():
            return home
        try:
            backend = backend_for_running_loop()
        except RuntimeError:
            raise FastAPITasksUninitializedAppError(
                "schedule() was called where no event loop is running; call it from async "
                "code, a def endpoint or a task"
            ) from None
        loop = getattr(backend, "loop", None)
        if loop is None:  # pragma: no cover - trio runs one loop per thread
            return home
        known = self._foreign.get(loop)
        if known is None:
            self._foreign[loop] = known = backend
            backend.owner = self.controls
        return known

    # ---------------------------------------------------------------- admission
    def _reject(self) -> Any:
        if self.state == "idle":
            raise FastAPITasksUninitializedAppError(
                "the fastapi-tasks runtime is not running: call add_tasks(app) and run the app's "
                "lifespan (uvicorn does; in tests use 'with TestClient(app)' or an ASGI "
                "lifespan manager)"
            )
        self.ledger.refused("rejected")
        raise FastAPITasksShutdownError(
            "the application is shutting down: new tasks are not accepted"
        )

    def check_admission(self) -> None:
        """Raise (and count a rejection) unless new work is accepted right now. Loop thread."""
        if not self._accepting:
            self._reject()

    def submit(self, task: Task[..., Any], *, deferred: bool = False) -> Task[..., Any]:
        """Admit ``task`` and start it. Safe from any thread. ``deferred`` tasks (after-route,
        after-response) were admitted when scheduled: only a shutdown can refuse them now.

        :raises FastAPITasksShutdownError: if shutdown began.
        :raises FastAPITasksQueueFullError: if ``max_pending`` sync tasks already wait for a
            thread and this one would wait too.
        :raises FastAPITasksUninitializedAppError: if the lifespan has not started.
        """
        if task.config.controlled:  # timeout, retry or limit: the controlled path
            return self.controls.submit(task, deferred)
        if task.is_async:
            try:
                loop: object = _get_running_loop()
            except RuntimeError:
                loop = None
            if loop is self._fast_loop:  # on the home asyncio loop, accepting
                self.ledger.admit(task)
                task._backend = self._home
                task._runner = self._create_native(self.runner.run(task), context=task.context)
                return task
        if self._loop_thread != threading.get_ident():
            return self.call_on_loop(self._submit_deferred if deferred else self.submit, task)
        if not self._accepting:
            self._reject()
        try:
            loop = _get_running_loop()
        except RuntimeError:
            loop = None
        home = self._home
        backend = home if loop is self._home_loop and home is not None else self._backend_here()
        if task.is_async:
            if self.controls.async_limit is not None:  # add_tasks(async_limit=N)
                return self.controls.submit(task, deferred)
            self.ledger.admit(task)
            self.runner.spawn(task, backend)
            return task
        threads = self.threads
        max_pending = self.max_pending
        if (
            max_pending is not None
            and not deferred
            and not threads.has_free_slot()
            and self.counters.waiting >= max_pending
        ):
            self.ledger.refused("rejected")
            raise FastAPITasksQueueFullError(
                f"{self.counters.waiting} sync tasks are already waiting for a thread "
                f"(max_pending={max_pending}, thread_limit={self.thread_limit}); try again "
                "later or raise max_pending"
            )
        self.ledger.admit(task)
        threads.submit(task, backend)
        return task

    def _submit_deferred(self, task: Task[..., Any]) -> Task[..., Any]:
        return self.submit(task, deferred=True)

    def count_refused(self, outcome: Literal["rejected", "discarded"], count: int = 1) -> None:
        self.ledger.refused(outcome, count)

    # ---------------------------------------------------------------- introspection
    def stats(self) -> TaskStats:
        """A consistent snapshot of the counters (taken on the loop thread when running)."""
        if self.state in ("starting", "running", "draining") and not self.on_loop_thread():
            try:
                return self.call_on_loop(self._snapshot)
            except FastAPITasksError:  # the loop is gone: a best-effort read
                pass
        return self._snapshot()

    def _snapshot(self) -> TaskStats:
        limiter = self.threads.limiter
        busy = limiter.statistics().borrowed_tokens if limiter is not None else 0
        return self.ledger.counters.snapshot(self.state, self.thread_limit, busy)


def _no_loop(*args: Any, **kwargs: Any) -> Canceller:
    raise RuntimeError("no event loop")  # pragma: no cover - guarded by fast_loop


def _capture(func: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
    """Run ``func`` on the loop and return its outcome, so that an exception it raises is told
    apart from one ``anyio.from_thread`` raises about the hop itself."""
    try:
        return True, func(*args)
    except Exception as exc:  # noqa: BLE001 - re-raised in the calling thread
        return False, exc
