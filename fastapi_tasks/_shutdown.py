"""The shutdown coordinator: stop admission, cancel unshielded work, drain shielded work.

The drain runs when the application's lifespan ends, *before* the application's own teardown,
so shielded tasks can still use what the lifespan opened (database pools, HTTP clients).

1. Admission closes: every ``schedule()`` from now on raises ``FastAPITasksShutdownError``.
2. Unshielded sync tasks still waiting for a thread are dropped (counted as cancelled).
3. The task group is cancelled: unshielded async tasks get a cancellation at their next
   ``await``; unshielded sync tasks already in a thread cannot be interrupted, but see the
   cancellation through ``anyio.from_thread.check_cancelled()``; the drain waits for them.
4. Shielded tasks (async and sync, queued or running) run to completion.
5. With ``shutdown_timeout`` set, whatever is still running at the deadline is abandoned and named
   in the log. While draining, a progress line names the tasks still running every
   ``progress_interval`` seconds, and one summary line closes the drain.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import anyio

from ._runtime import logger

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
    """Shut ``runtime`` down as described in the module docstring. Call it inside
    ``runtime.serving()``; it returns when no task is left running or the deadline passed."""
    if progress_interval is None:
        progress_interval = PROGRESS_INTERVAL
    started = time.monotonic()
    counters = runtime.counters
    before = (counters.succeeded, counters.failed, counters.cancelled)
    runtime.close_admission()
    dropped = runtime.cancel_unstarted(include_shielded=False)
    tg = runtime.tg
    if tg is not None:
        tg.cancel_scope.cancel()
    if runtime.live:
        logger.info(
            "fastapi-tasks: draining %d task(s) (%d shielded); %d queued unshielded "
            "task(s) that had not started were dropped",
            len(runtime.live),
            sum(1 for task in runtime.live if task.shielded),
            len(dropped),
        )
    deadline = math.inf if timeout is None else anyio.current_time() + timeout
    with anyio.CancelScope(shield=True):
        while runtime.live:
            wait_for = min(progress_interval, deadline - anyio.current_time())
            if wait_for <= 0:
                break
            with anyio.move_on_after(wait_for):
                await runtime.wait_idle()
            if runtime.live and anyio.current_time() < deadline:
                logger.info(
                    "fastapi-tasks: still draining after %.1fs: %s",
                    time.monotonic() - started,
                    _describe(sorted(runtime.live, key=_start_key), time.monotonic()),
                )
        stragglers = sorted(runtime.live, key=_start_key)
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
            runtime.cancel_unstarted(include_shielded=True)
            for task in stragglers:
                runtime.abandon(task)
    completed = counters.succeeded + counters.failed - before[0] - before[1]
    cancelled = counters.cancelled - before[2]
    logger.log(
        logging.INFO if not stragglers else logging.WARNING,
        "fastapi-tasks: drained in %.3fs: %d completed, %d cancelled, %d abandoned",
        time.monotonic() - started,
        completed,
        cancelled - len(stragglers),
        len(stragglers),
    )


def _start_key(task: Task[..., Any]) -> float:
    return task.started_at if task.started_at is not None else math.inf
