"""Accounting: the live-task registry, the counters, and every change of a task's state.

Every task admitted to run passes through exactly three calls: :meth:`Ledger.admit`,
:meth:`Ledger.start` (unless it ends before starting) and :meth:`Ledger.finish`, so the stats
invariant ``scheduled == pending + running + succeeded + failed + cancelled`` holds at every
moment. Called on the event loop thread only.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

import anyio

from ._log import logger
from ._stats import Counters
from ._task import Task, TaskState

if TYPE_CHECKING:
    from ._stats import TaskObserver

__all__ = ["Ledger"]

_PENDING = TaskState.PENDING
_RUNNING = TaskState.RUNNING
_SUCCEEDED = TaskState.SUCCEEDED
_FAILED = TaskState.FAILED
_CANCELLED = TaskState.CANCELLED
_monotonic = time.monotonic


class Ledger:
    __slots__ = ("_idle_event", "closing", "counters", "expected", "live", "lost", "observer")

    def __init__(self) -> None:
        self.counters = Counters()
        #: Admitted tasks that have not finished. Holding them here keeps their native tasks
        #: alive; a finished task is dropped at once, so nothing of it is retained.
        self.live: set[Task[..., Any]] = set()
        #: Set by ``fastapi_tasks.prometheus.instrument``: told about every accounting event.
        self.observer: TaskObserver | None = None
        self._idle_event: anyio.Event | None = None
        #: Set once the drain (or the stop) began: cancellations are the runtime's own.
        self.closing = False
        #: Running tasks the runtime cancels on purpose (``task.cancel()``).
        self.expected: set[Task[..., Any]] = set()
        #: Names of shielded tasks cancelled from outside while no drain ran: a forced exit
        #: tore the event loop down (reported by the lifespan, see ``_lifespan``).
        self.lost: list[str] = []

    def reset(self) -> None:
        self.counters = Counters()
        self.live = set()
        self._idle_event = None
        self.closing = False
        self.expected = set()
        self.lost = []

    def expect_cancel(self, task: Task[..., Any]) -> None:
        """The runtime is about to cancel ``task`` on purpose (``task.cancel()``)."""
        self.expected.add(task)

    def admit(self, task: Task[..., Any]) -> None:
        counters = self.counters
        counters.scheduled += 1
        self.live.add(task)
        if self.observer is not None:
            self.observer.scheduled(task)

    def start(self, task: Task[..., Any]) -> None:
        counters = self.counters
        counters.started += 1
        task.state = _RUNNING
        task.started_at = _monotonic()
        if task._started is not None:
            task._started.set()
        if self.observer is not None:
            self.observer.started(task)

    def finish(
        self, task: Task[..., Any], state: TaskState, error: BaseException | None = None
    ) -> None:
        """Record how ``task`` ended. A second outcome for a task already counted (one given up
        at the shutdown deadline that finishes later) is logged, not counted."""
        previous = task.state
        counters = self.counters
        if previous is _PENDING:
            counters.ended_pending += 1
        elif previous is not _RUNNING:
            self._late(task, state)
            return
        if state is _SUCCEEDED:
            counters.succeeded += 1
        elif state is _FAILED:
            counters.failed += 1
        else:
            counters.cancelled += 1
            if (
                previous is _RUNNING
                and not self.closing
                and task.config.shield is True
                and task not in self.expected
            ):
                # Nobody here cancelled it and no drain runs: the event loop is being torn
                # down (a forced exit). The lifespan's report counts it as lost.
                self.lost.append(task.name)
        self.live.discard(task)
        if self.expected:
            self.expected.discard(task)
        task._mark_finished(state, error)
        if self.observer is not None:
            self.observer.finished(task, state, previous is _RUNNING)
        if not self.live and self._idle_event is not None:
            self._idle_event.set()

    def succeeded(self, task: Task[..., Any]) -> None:
        """:meth:`finish` for the most common outcome, a running task that succeeded, in fewer
        steps (it runs once per task)."""
        if task.state is not _RUNNING or self.observer is not None:
            self.finish(task, _SUCCEEDED)
            return
        self.counters.succeeded += 1
        live = self.live
        live.discard(task)
        if self.expected:  # cancelled on purpose, and it chose to finish anyway
            self.expected.discard(task)
        task.state = _SUCCEEDED
        task._runner = None
        if task._done is not None:
            task._done.set()
        if not live and self._idle_event is not None:
            self._idle_event.set()

    def abandon(self, task: Task[..., Any]) -> None:
        """Give up on ``task`` at the shutdown deadline: count it cancelled and abandoned and
        cancel it. If it still finishes later, :meth:`finish` logs that it did."""
        if task.done():
            return
        self.counters.abandoned += 1
        task._abandoned_at = _monotonic()
        runner = task._runner
        self.finish(task, _CANCELLED)
        if runner is not None:
            runner.cancel()

    def refused(self, outcome: Literal["rejected", "discarded"], count: int = 1) -> None:
        """Count tasks refused at ``schedule()`` (rejected) or dropped with their request
        (discarded)."""
        if outcome == "rejected":
            self.counters.rejected += count
        else:
            self.counters.discarded += count
        if self.observer is not None:
            self.observer.refused(outcome, count)

    async def wait_idle(self) -> None:
        """Wait until every admitted task has finished."""
        while self.live:
            if self._idle_event is None or self._idle_event.is_set():
                self._idle_event = anyio.Event()
            await self._idle_event.wait()

    def _late(self, task: Task[..., Any], state: TaskState) -> None:
        abandoned_at = task._abandoned_at
        if abandoned_at is None or state is _CANCELLED:
            return
        logger.warning(
            "fastapi-tasks: %s %s %.1fs after the shutdown deadline gave up on it (it was "
            "counted as abandoned)",
            task.name,
            "completed" if state is _SUCCEEDED else "failed",
            _monotonic() - abandoned_at,
        )
