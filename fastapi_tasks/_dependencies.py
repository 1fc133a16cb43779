"""The ``Tasks`` dependency: the request's scheduler.

A plain ``async def`` dependency (no ``yield``: FastAPI's machinery for dependencies with
``yield`` costs ~30 us per request, and the timing of after-route and after-response tasks is
handled by the request hooks in ``_request_hooks``). Your own dependencies, with or without
``yield``, may depend on it. FastAPI caches dependencies per request, and the scheduler lives on
the request's queues, so an endpoint and its sub-dependencies get the same scheduler.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from ._request_hooks import QUEUES_KEY
from ._scheduler import RequestQueues, TaskScheduler
from .errors import FastAPITasksUninitializedAppError

__all__ = ["Tasks"]


async def _request_scheduler(conn: HTTPConnection) -> TaskScheduler:
    queues: RequestQueues | None = conn.scope.get(QUEUES_KEY)
    if queues is None:
        raise FastAPITasksUninitializedAppError(
            "the Tasks dependency needs the task runtime: call add_tasks(app) when you create "
            "the FastAPI app (before it starts serving); for an app mounted in another one, "
            "add_tasks() on the outer app serves both"
        )
    if queues.runtime.state == "idle":
        raise FastAPITasksUninitializedAppError(
            "the Tasks dependency was used but the app's lifespan is not running: "
            "add_tasks(app) was called, but the task runtime starts with the lifespan (uvicorn "
            "runs it; in tests use 'with TestClient(app)' or an ASGI lifespan manager, or "
            "enter 'async with task_runtime(app)')"
        )
    return queues.scheduler


Tasks = Annotated[TaskScheduler, Depends(_request_scheduler)]
"""Declare ``tasks: Tasks`` in an endpoint or dependency to get the request's scheduler."""
