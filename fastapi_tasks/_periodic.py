"""Periodic tasks: ``get_tasks(app).every(interval, func, ...)``.

A schedule is one small native task on the application's event loop (no thread) that sleeps
until each tick's deadline, ``start + n * interval`` on the loop's monotonic clock, so ticks do
not drift however long the runs take. At each tick it schedules one run of the function as an
ordinary task (counted in ``stats()``, shielding and ``on_error`` as for any task), unless the
previous run is still going: then the tick is *skipped* and counted (``skipped`` in
``stats()``). Ticks that passed while the loop was blocked are skipped too, so a late loop never
gets a burst of runs. A failing run is logged and handed to ``on_error``; the schedule goes on.

Schedules stop when the shutdown drain begins (before admission closes, so no run is refused);
the run in flight then is an ordinary task: cancelled unless shielded.
"""

from __future__ import annotations

import contextvars
import datetime
import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from ._callables import callable_name, inspect_call
from ._log import logger
from ._stats import notify
from .errors import (
    FastAPITasksError,
    FastAPITasksShutdownError,
    FastAPITasksUninitializedAppError,
)

if TYPE_CHECKING:
    from ._runtime import TaskRuntime
    from ._scheduler import TaskScheduler
    from ._task import Task

__all__ = ["PeriodicTask", "check_interval", "periodic_runs", "start_periodic", "stop_periodic"]

#: Runs of periodic tasks (tracing starts a new trace for each, linked to the ``every()`` call).
periodic_runs: weakref.WeakSet[Task[..., Any]] = weakref.WeakSet()

#: The schedules running on each runtime (stopped and forgotten at shutdown).
_schedules: weakref.WeakKeyDictionary[TaskRuntime, set[PeriodicTask]] = weakref.WeakKeyDictionary()


def check_interval(interval: object) -> float:
    """The interval in seconds.

    :raises TypeError: unless it is a number of seconds or a :class:`datetime.timedelta`.
    :raises ValueError: unless it is finite and positive.
    """
    if isinstance(interval, datetime.timedelta):
        seconds = interval.total_seconds()
    elif isinstance(interval, (int, float)) and not isinstance(interval, bool):
        seconds = float(interval)
    else:
        raise TypeError(
            "every() needs the interval as a number of seconds or a datetime.timedelta, not "
            f"{type(interval).__name__}"
        )
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"every() needs a finite interval > 0 seconds, got {interval!r}")
    return seconds


class PeriodicTask:
    """A running schedule made by ``every()``. Stop it with :meth:`cancel`.

    Each run is an ordinary :class:`~fastapi_tasks.Task`; :attr:`last` is the latest one.
    """

    __slots__ = (
        "__weakref__",
        "_args",
        "_driver",
        "_func",
        "_kwargs",
        "_runtime",
        "_scheduler",
        "_scope",
        "_stopped",
        "interval",
        "last",
        "name",
        "runs",
        "skipped",
    )

    _runtime: TaskRuntime
    _scheduler: TaskScheduler
    _func: Callable[..., Any]
    _args: tuple[Any, ...]
    _kwargs: dict[str, Any]
    _scope: anyio.CancelScope | None
    _driver: object  # keeps the asyncio task referenced while it sleeps
    _stopped: bool
    #: Seconds between two ticks.
    interval: float
    #: The name every run gets (``name=`` or the function's dotted name).
    name: str
    #: The latest run, or ``None`` before the first tick.
    last: Task[..., Any] | None
    #: Runs scheduled so far.
    runs: int
    #: Ticks skipped so far (the previous run was still going, or the loop was late).
    skipped: int

    def __init__(self) -> None:
        """Not created by hand: ``every()`` returns it.

        :raises TypeError: always.
        """
        raise TypeError("PeriodicTask is not created directly: call every() on a scheduler")

    @classmethod
    def _create(
        cls,
        runtime: TaskRuntime,
        scheduler: TaskScheduler,
        interval: float,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> PeriodicTask:
        self = object.__new__(cls)
        self._runtime = runtime
        self._scheduler = scheduler
        self._func = func
        self._args = args
        self._kwargs = kwargs
        self._scope = None
        self._driver = None
        self._stopped = False
        self.interval = interval
        self.name = scheduler.config.name or callable_name(func)
        self.last = None
        self.runs = 0
        self.skipped = 0
        return self

    @property
    def active(self) -> bool:
        """Whether the schedule still ticks (not cancelled, no shutdown yet)."""
        return not self._stopped

    def cancel(self) -> bool:
        """Stop the schedule: no more ticks. A run in progress is left to finish (cancel it
        with ``periodic.last.cancel()`` if you need to). Safe from any thread; idempotent.

        :returns: ``True`` if this call stopped it, ``False`` if it was already stopped.
        """
        runtime = self._runtime
        if runtime.on_loop_thread():
            return self._stop()
        try:
            stopped: bool = runtime.call_on_loop(self._stop)
        except FastAPITasksError:  # the loop is gone: so is the schedule
            stopped = not self._stopped
            self._stopped = True
        return stopped

    def _stop(self) -> bool:
        if self._stopped:
            return False
        self._stopped = True
        schedules = _schedules.get(self._runtime)
        if schedules is not None:
            schedules.discard(self)
        if self._scope is not None:
            self._scope.cancel()
        return True

    def __repr__(self) -> str:
        state = "active" if not self._stopped else "stopped"
        return (
            f"<PeriodicTask name={self.name!r} interval={self.interval}s {state} "
            f"runs={self.runs} skipped={self.skipped}>"
        )

    # ---------------------------------------------------------------- the driver (event loop)
    async def _drive(self) -> None:
        """The schedule's own native task: tick at ``start + n * interval``. Never raises."""
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._stopped:
                    return
                interval = self.interval
                clock = anyio.current_time
                start = clock()
                tick = 0
                while True:
                    due = int((clock() - start) // interval)  # the latest tick whose time came
                    if due > tick:  # the loop woke us late: those ticks had no run
                        self._skip(due - tick)
                        tick = due
                    if not self._tick():
                        return
                    tick += 1
                    await anyio.sleep_until(start + tick * interval)
        except anyio.get_cancelled_exc_class():
            raise  # the event loop itself is ending (not our scope: that one is caught)
        except BaseException:  # noqa: BLE001 - the driver must never take the loop down
            logger.exception("fastapi-tasks: the schedule of %s stopped on an internal error", self)
        finally:
            self._stop()

    def _skip(self, count: int) -> None:
        self.skipped += count
        runtime = self._runtime
        runtime.counters.skipped += count
        notify(runtime.observer, "skipped", count)
        logger.info(
            "fastapi-tasks: skipped %d tick(s) of periodic task %r: %s",
            count,
            self.name,
            "the previous run was still going"
            if self.last is not None and not self.last.done()
            else "the event loop was late",
        )

    def _tick(self) -> bool:
        """Start a run unless the previous one is still going; ``False`` ends the schedule."""
        if self._stopped or not self._runtime.accepting:
            return False
        last = self.last
        if last is not None and not last.done():
            self._skip(1)
            return True
        try:
            self.last = run = self._scheduler.schedule(self._func, *self._args, **self._kwargs)
        except FastAPITasksShutdownError:
            return False
        except Exception as exc:  # noqa: BLE001 - e.g. max_pending reached: this tick is lost
            logger.warning(
                "fastapi-tasks: a run of periodic task %r was not scheduled: %s: %s",
                self.name,
                type(exc).__name__,
                exc,
            )
            return True
        periodic_runs.add(run)
        self.runs += 1
        return True


def start_periodic(
    runtime: TaskRuntime,
    scheduler: TaskScheduler,
    interval: object,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> PeriodicTask:
    """Validate, then start a schedule whose first run starts now. Any thread.

    :raises TypeError: for a bad interval, a function that cannot be a task, or arguments
        that do not fit it.
    :raises ValueError: for an interval that is not finite and positive.
    :raises FastAPITasksUninitializedAppError: if the app's lifespan has not started.
    :raises FastAPITasksShutdownError: if the application is shutting down.
    """
    seconds = check_interval(interval)
    inspect_call(func, args, kwargs)
    periodic = PeriodicTask._create(runtime, scheduler, seconds, func, args, kwargs)
    context = contextvars.copy_context()
    if runtime.on_loop_thread():
        _launch(runtime, periodic, context)
    else:
        runtime.call_on_loop(_launch, runtime, periodic, context)
    return periodic


def _launch(runtime: TaskRuntime, periodic: PeriodicTask, context: contextvars.Context) -> None:
    if not runtime.accepting:
        if runtime.state == "idle":
            raise FastAPITasksUninitializedAppError(
                "every() needs the application's lifespan to be running: call it from startup "
                "code (the lifespan), an endpoint or a task"
            )
        raise FastAPITasksShutdownError(
            "the application is shutting down: new periodic tasks are not accepted"
        )
    backend = runtime._backend_here()
    _schedules.setdefault(runtime, set()).add(periodic)
    periodic._driver = backend.spawn(periodic._drive, context=context)


def stop_periodic(runtime: TaskRuntime) -> int:
    """Stop every schedule of ``runtime`` (shutdown); return how many were running."""
    schedules = _schedules.pop(runtime, set())
    for periodic in list(schedules):
        periodic._stop()
    return len(schedules)
