"""Counters kept by the runtime and the immutable :class:`TaskStats` snapshot."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from ._task import Task, TaskState

__all__ = [
    "Counters",
    "RuntimeState",
    "TaskObserver",
    "TaskStats",
    "add_observer",
    "iter_observers",
]

RuntimeState = Literal["idle", "starting", "running", "draining", "stopped"]


@dataclass(frozen=True)
class TaskStats:
    """A point-in-time snapshot of a task runtime. Plain values only: safe to return as JSON.

    Invariant (holds in every snapshot)::

        scheduled == pending + running + succeeded + failed + cancelled

    ``rejected`` (refused by ``schedule()`` or on release), ``discarded`` (after-route and
    after-response tasks dropped because the endpoint raised) and ``deferred`` (queued for after
    the route/response, not released yet) are outside ``scheduled``: a task is counted in
    ``scheduled`` only once it is admitted to run.
    """

    #: ``"idle"`` before the lifespan, ``"starting"`` while the app's own startup code runs
    #: (tasks it schedules wait), then ``"running"``, ``"draining"``, ``"stopped"``.
    state: RuntimeState
    #: The process this snapshot describes (one runtime per worker process).
    pid: int
    thread_limit: int
    #: Threads of the runtime's own limiter running a sync task right now.
    threads_busy: int
    scheduled: int
    #: Admitted and not started yet: async tasks about to take their first step on the event
    #: loop, and sync tasks waiting for a thread (``waiting``).
    pending: int
    #: Of ``pending``: tasks waiting for capacity: sync tasks queued because all
    #: ``thread_limit`` threads are busy, and tasks waiting for a slot of a concurrency limit
    #: (``async_limit``, ``TaskConfig.limit``). ``max_pending`` bounds this backlog.
    waiting: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    #: Of ``cancelled``: tasks given up at the shutdown deadline or abandoned in their thread.
    abandoned: int
    #: Extra attempts made by tasks with a ``retry`` policy (a task retried twice counts 2; it
    #: still counts once in ``scheduled`` and once in its final outcome).
    retried: int
    rejected: int
    discarded: int
    deferred: int
    #: Ticks of periodic tasks (``every()``) that started no run: the previous run was still
    #: going (or the event loop was late). Outside ``scheduled``.
    skipped: int
    #: Durable jobs handed to the queue (``tasks.durable``), and enqueues that failed.
    enqueued: int
    enqueue_failed: int

    def to_dict(self) -> dict[str, int | str]:
        """The snapshot as a ``dict`` of ``str``/``int`` values."""
        return asdict(self)


class Counters:
    """Mutable counters, written only on the event loop thread (O(1) to read).

    Only totals that grow are stored; ``pending`` and ``running`` are derived from them, so a
    task's life costs three increments (admitted, started, ended) rather than seven updates.
    """

    __slots__ = (
        "abandoned",
        "cancelled",
        "deferred",
        "discarded",
        "ended_pending",
        "enqueue_failed",
        "enqueued",
        "failed",
        "rejected",
        "retried",
        "scheduled",
        "skipped",
        "started",
        "succeeded",
        "waiting",
    )

    def __init__(self) -> None:
        self.scheduled = 0
        #: Tasks that started, and tasks that ended without starting (cancelled while pending).
        self.started = 0
        self.ended_pending = 0
        self.waiting = 0
        self.succeeded = 0
        self.failed = 0
        self.cancelled = 0
        self.abandoned = 0
        self.retried = 0
        self.rejected = 0
        self.discarded = 0
        self.deferred = 0
        self.skipped = 0
        self.enqueued = 0
        self.enqueue_failed = 0

    @property
    def pending(self) -> int:
        """Admitted, not started, not ended."""
        return self.scheduled - self.started - self.ended_pending

    @property
    def running(self) -> int:
        """Started and not ended."""
        return self.started + self.ended_pending - self.succeeded - self.failed - self.cancelled

    def snapshot(self, state: RuntimeState, thread_limit: int, threads_busy: int) -> TaskStats:
        return TaskStats(
            state=state,
            pid=os.getpid(),
            thread_limit=thread_limit,
            threads_busy=threads_busy,
            scheduled=self.scheduled,
            pending=self.pending,
            waiting=self.waiting,
            running=self.running,
            succeeded=self.succeeded,
            failed=self.failed,
            cancelled=self.cancelled,
            abandoned=self.abandoned,
            retried=self.retried,
            rejected=self.rejected,
            discarded=self.discarded,
            deferred=self.deferred,
            skipped=self.skipped,
            enqueued=self.enqueued,
            enqueue_failed=self.enqueue_failed,
        )


class TaskObserver(Protocol):
    """Receives the runtime's accounting events as they happen (on the event loop thread).

    Used by the optional Prometheus exporter; each call must be quick and must not raise.
    """

    def scheduled(self, task: Task[..., Any]) -> None: ...
    def started(self, task: Task[..., Any]) -> None: ...
    def finished(self, task: Task[..., Any], state: TaskState, was_running: bool) -> None: ...
    def refused(self, outcome: Literal["rejected", "discarded"], count: int) -> None: ...


class _Observers:
    """Several observers (Prometheus and tracing), each told about every event in turn."""

    __slots__ = ("observers",)

    def __init__(self, observers: tuple[TaskObserver, ...]) -> None:
        self.observers = observers

    def scheduled(self, task: Task[..., Any]) -> None:
        for observer in self.observers:
            observer.scheduled(task)

    def started(self, task: Task[..., Any]) -> None:
        for observer in self.observers:
            observer.started(task)

    def finished(self, task: Task[..., Any], state: TaskState, was_running: bool) -> None:
        for observer in self.observers:
            observer.finished(task, state, was_running)

    def refused(self, outcome: Literal["rejected", "discarded"], count: int) -> None:
        for observer in self.observers:
            observer.refused(outcome, count)


def notify(observer: TaskObserver | None, event: str, *args: Any) -> None:
    """Tell the installed observers about one of the optional events (``enqueue_done``,
    ``retried``, ``skipped``): each only implements the events it cares about."""
    for each in iter_observers(observer):
        method = getattr(each, event, None)
        if method is not None:
            method(*args)


def iter_observers(observer: TaskObserver | None) -> tuple[TaskObserver, ...]:
    """The observers installed (``runtime.observer`` may hold several)."""
    if observer is None:
        return ()
    if isinstance(observer, _Observers):
        return observer.observers
    return (observer,)


def add_observer(current: TaskObserver | None, new: TaskObserver) -> TaskObserver:
    """What to install as ``runtime.observer`` so that ``new`` is told too."""
    if current is None:
        return new
    return _Observers((*iter_observers(current), new))
