"""The ``Tasks`` dependency: the request's scheduler.

A plain ``async def`` dependency with one sub-dependency, :func:`~._request_hooks.endpoint_outcome`,
a dependency with ``yield`` and ``scope="function"`` that marks the end of the endpoint (see
``_request_hooks``). ``Tasks`` itself keeps the default scope, so your own dependencies with
``yield`` (request-scoped by default) may depend on it: FastAPI refuses a request-scoped
dependency with ``yield`` that depends *directly* on a function-scoped one, not one further
down. FastAPI caches dependencies per request, and the scheduler lives on the request's queues,
so an endpoint and its sub-dependencies get the same scheduler.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from ._request_hooks import QUEUES_KEY, endpoint_outcome
from ._scheduler import RequestQueues, TaskScheduler
from .errors import FastAPITasksUninitializedAppError

__all__ = ["Tasks"]


async def _request_scheduler(
    conn: HTTPConnection, _: Annotated[None, Depends(endpoint_outcome, scope="function")]
) -> TaskScheduler:
    queues: RequestQueues | None = conn.scope.get(QUEUES_KEY)
    if queues is None:
        raise FastAPITasksUninitializedAppError(
            "the Tasks dependency needs the task runtime: call add_tasks(app) when you create "
            "the FastAPI app (before it starts serving); for an app mounted in another one, "
            "call add_tasks() on the outer app"
        )
    if queues.runtime.state == "idle":
        raise FastAPITasksUninitializedAppError(
            "the Tasks dependency was used but the app's lifespan is not running: "
            "add_tasks(app) was called, but the task runtime starts with the lifespan (uvicorn "
            "runs it; in tests use 'with TestClient(app)' or an ASGI lifespan manager). A "
            "mounted app's lifespan never runs: call add_tasks() on the outer app too (it then "
            "runs the mounted app's runtime), or enter 'async with task_runtime(mounted_app)' "
            "in the outer app's lifespan"
        )
    return queues.scheduler


Tasks = Annotated[TaskScheduler, Depends(_request_scheduler)]
"""Declare ``tasks: Tasks`` in an endpoint or dependency to get the request's scheduler."""
