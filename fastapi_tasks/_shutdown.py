"""The shutdown coordinator: stop admission, cancel unshielded work, drain shielded work.

The drain runs when the application's lifespan ends, *before* the application's own teardown,
so shielded tasks can still use what the lifespan opened (database pools, HTTP clients).

1. Periodic schedules (``every()``) stop, then admission closes: every ``schedule()`` from
   now on raises ``FastAPITasksShutdownError``.
2. Unshielded tasks that have not started (sync ones waiting for a thread, async ones about to
   take their first step) end ``cancelled`` and never start.
3. Unshielded running tasks are cancelled: async ones get a cancellation at their next
   ``await``; sync ones cannot be interrupted but see it through
   ``anyio.from_thread.check_cancelled()``, and the drain waits for them.
4. Shielded tasks (async and sync, waiting or running) run to completion.
5. With ``shutdown_timeout`` set, whatever is still live at the deadline is cancelled, counted
   as *abandoned* and named in the log, and the drain returns: the lifespan ends on time,
   whatever the tasks do. A task given up on that still finishes later is logged as such.
   While draining, a progress line names the tasks still running every ``progress_interval``
   seconds, and one summary line closes the drain.

The drain waits under ``CancelScope(shield=True)``: a cancelled lifespan does not cut it short
(only the deadline does).
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import anyio

from ._log import logger
from ._periodic import stop_periodic

if TYPE_CHECKING:
    from ._runtime import TaskRuntime
    from ._task import Task

__all__ = ["drain"]

#: Seconds between two "still draining" log lines (read at each drain; tests lower it).
PROGRESS_INTERVAL = 5.0

#: Longest list of task names put in one log line.
_MAX_NAMES = 20


def _describe(tasks: list[Task[..., Any]], now: float) -> str:
    parts = []
    for task in tasks[:_MAX_NAMES]:
        if task.started_at is None:
            parts.append(f"{task.name} (not started)")
        else:
            parts.append(f"{task.name} ({now - task.started_at:.1f}s)")
    if len(tasks) > _MAX_NAMES:
        parts.append(f"and {len(tasks) - _MAX_NAMES} more")
    return ", ".join(parts)


async def drain(
    runtime: TaskRuntime,
    *,
    timeout: float | None,
    progress_interval: float | None = None,
) -> None:
    """Shut ``runtime`` down as described in the module docstring. Call it on the loop the
    lifespan runs on; it returns when no task is live or the deadline passed."""
    if progress_interval is None:
        progress_interval = PROGRESS_INTERVAL
    started = time.monotonic()
    deadline = math.inf if timeout is None else anyio.current_time() + timeout
    ledger = runtime.ledger
    counters = ledger.counters
    before = (counters.succeeded, counters.failed, counters.cancelled, counters.abandoned)
    stop_periodic(runtime)  # no more ticks; a run in flight is drained as any task
    runtime.close_admission()
    dropped = len(runtime.threads.cancel_waiting(include_shielded=False))
    for task in list(ledger.live):
        if task.shielded:
            continue
        if task.state.value == "pending":
            dropped += 1
        runtime.cancel(task)
    _abandon_orphans(runtime)
    if ledger.live:
        logger.info(
            "fastapi-tasks: draining %d task(s) (%d shielded); %d unshielded task(s) that had "
            "not started were cancelled",
            len(ledger.live),
            sum(1 for task in ledger.live if task.shielded),
            dropped,
        )
    with anyio.CancelScope(shield=True):
        while ledger.live:
            wait_for = min(progress_interval, deadline - anyio.current_time())
            if wait_for <= 0:
                break
            with anyio.move_on_after(wait_for):
                await ledger.wait_idle()
            _abandon_orphans(runtime)
            if ledger.live and anyio.current_time() < deadline:
                logger.info(
                    "fastapi-tasks: still draining after %.1fs: %s",
                    time.monotonic() - started,
                    _describe(sorted(ledger.live, key=_start_key), time.monotonic()),
                )
        stragglers = sorted(ledger.live, key=_start_key)
        if stragglers:
            now = time.monotonic()
            for task in stragglers:
                logger.warning(
                    "fastapi-tasks: shutdown_timeout=%ss reached; abandoning %s, which did not "
                    "complete (%s)",
                    timeout,
                    task.name,
                    "not started"
                    if task.started_at is None
                    else f"ran {now - task.started_at:.1f}s",
                )
            for task in stragglers:
                ledger.abandon(task)
            runtime.threads.cancel_waiting(include_shielded=True)
    abandoned = counters.abandoned - before[3]
    completed = counters.succeeded + counters.failed - before[0] - before[1]
    cancelled = counters.cancelled - before[2] - abandoned
    logger.log(
        logging.INFO if not abandoned else logging.WARNING,
        "fastapi-tasks: drained in %.3fs: %d completed, %d cancelled, %d abandoned",
        time.monotonic() - started,
        completed,
        cancelled,
        abandoned,
    )


def _abandon_orphans(runtime: TaskRuntime) -> None:
    """Give up on tasks whose event loop has closed (a test suite that ran requests on a loop
    it then closed): they can never finish."""
    home = runtime.home
    for task in list(runtime.ledger.live):
        backend = task._backend
        if backend is not None and backend is not home and backend.is_closed():
            logger.warning(
                "fastapi-tasks: %s can never finish: the event loop it ran on is closed",
                task.name,
            )
            runtime.ledger.abandon(task)


def _start_key(task: Task[..., Any]) -> float:
    return task.started_at if task.started_at is not None else math.inf
