"""Helpers for testing applications that use fastapi-tasks.

* :func:`wait_for_tasks` / :func:`wait_for_tasks_sync`: wait until every task scheduled so far
  has finished, instead of sleeping and hoping. On timeout they raise
  :class:`~fastapi_tasks.errors.FastAPITasksTimeoutError` naming the unfinished tasks.
* :func:`capture_tasks`: record what an app schedules without running it, then assert on it
  (and run the recorded tasks yourself if you want their effects).

Works with ``httpx.AsyncClient`` + an ASGI lifespan manager and with
``fastapi.testclient.TestClient`` used as a context manager (``with TestClient(app) as client``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from ._lifespan import get_runtime
from ._task import Task
from .errors import FastAPITasksTimeoutError, FastAPITasksUninitializedAppError

__all__ = [
    "CapturedTask",
    "CapturedTasks",
    "capture_tasks",
    "wait_for_tasks",
    "wait_for_tasks_sync",
]

Timing = Literal["now", "after_route", "after_response"]


async def wait_for_tasks(app: Any, *, timeout: float = 5.0) -> None:
    """Wait until every task the app has admitted so far has finished.

    "So far" includes after-response tasks of a request whose response your client already
    received. Tasks those tasks schedule later are not waited for: call it again.

    :raises FastAPITasksTimeoutError: after ``timeout`` seconds, naming the unfinished tasks.
    :raises FastAPITasksUninitializedAppError: if ``add_tasks(app)`` was not called.
    """
    runtime = get_runtime(app)
    pending = list(runtime.live)
    with anyio.move_on_after(timeout):
        for task in pending:
            await task.wait()
    unfinished = [task for task in pending if not task.done()]
    if unfinished:
        names = ", ".join(sorted(task.name for task in unfinished))
        raise FastAPITasksTimeoutError(
            f"{len(unfinished)} task(s) still unfinished after {timeout}s: {names}"
        )


def wait_for_tasks_sync(client: Any, *, timeout: float = 5.0) -> None:
    """:func:`wait_for_tasks` for a ``TestClient`` entered with ``with TestClient(app)``.

    :raises FastAPITasksUninitializedAppError: if the client is not inside its ``with`` block.
    :raises FastAPITasksTimeoutError: after ``timeout`` seconds, naming the unfinished tasks.
    """
    portal = getattr(client, "portal", None)
    if portal is None:
        raise FastAPITasksUninitializedAppError(
            "wait_for_tasks_sync() needs a running TestClient: use 'with TestClient(app) as "
            "client:' so the app's lifespan (and its task runtime) is running"
        )
    portal.call(functools.partial(wait_for_tasks, client.app, timeout=timeout))


@dataclass(frozen=True)
class CapturedTask:
    """A task recorded by :func:`capture_tasks`: the task handle and when it would have run."""

    task: Task[..., Any]
    timing: Timing

    @property
    def func(self) -> Any:
        return self.task.func

    @property
    def name(self) -> str:
        return self.task.name


class CapturedTasks(list[CapturedTask]):
    """The tasks recorded so far, in scheduling order."""

    @property
    def names(self) -> list[str]:
        return [captured.name for captured in self]

    def with_timing(self, timing: Timing) -> list[CapturedTask]:
        return [captured for captured in self if captured.timing == timing]

    async def run(self) -> None:
        """Run every recorded task once, in order, in the calling task; errors propagate."""
        for captured in self:
            await captured.task()


@contextmanager
def capture_tasks(app: Any) -> Iterator[CapturedTasks]:
    """Record the tasks ``app`` schedules inside the ``with`` block instead of running them.

    Recorded tasks are not admitted: they do not appear in ``stats()`` and never run unless you
    call ``await captured.run()`` (or ``captured[i].task()``) yourself.

    :raises FastAPITasksUninitializedAppError: if ``add_tasks(app)`` was not called.
    """
    runtime = get_runtime(app)
    captured = CapturedTasks()
    previous = runtime.capture

    def record(task: Task[..., Any], timing: str) -> None:
        captured.append(CapturedTask(task, timing))  # type: ignore[arg-type]

    runtime.capture = record
    try:
        yield captured
    finally:
        runtime.capture = previous
