"""The ``Tasks`` dependency and the hooks that release deferred tasks.

Two FastAPI dependencies with ``yield`` do the work:

* a request-scoped one creates the request's queues; its exit runs after the response has been
  sent (after the last chunk of a streaming response): it releases the after-response tasks;
* a function-scoped one returns the scheduler; its exit runs right after the endpoint function
  returns, before the response is sent: it releases the after-route tasks.

If the endpoint raises, FastAPI throws the exception into both, and the queued tasks are
discarded (counted and logged). FastAPI caches dependencies per request, so an endpoint and
its sub-dependencies share one scheduler.

WebSocket endpoints: both queues are released, after-route first, when the endpoint function
returns, and also when it ends with ``WebSocketDisconnect`` (the normal way a client leaves).
Any other exception discards them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect

from ._lifespan import STATE_KEY
from ._runtime import TaskRuntime
from ._scheduler import Mode, RequestQueues, TaskScheduler
from .errors import FastAPITasksUninitializedAppError

__all__ = ["Tasks"]


def _runtime_for(conn: HTTPConnection) -> TaskRuntime:
    state = conn.scope.get("state")
    runtime = state.get(STATE_KEY) if state is not None else None
    if runtime is None:
        app_state = getattr(conn.scope.get("app"), "state", None)
        if getattr(app_state, STATE_KEY, None) is None:
            raise FastAPITasksUninitializedAppError(
                "the Tasks dependency needs the task runtime: call add_tasks(app) when you "
                "create the FastAPI app"
            )
        raise FastAPITasksUninitializedAppError(
            "the Tasks dependency was used but the app's lifespan is not running: "
            "add_tasks(app) was called, but the runtime starts with the lifespan (uvicorn runs "
            "it; in tests use 'with TestClient(app)' or an ASGI lifespan manager)"
        )
    return runtime  # type: ignore[no-any-return]


def _ended_normally(exc: BaseException) -> bool:
    return isinstance(exc, WebSocketDisconnect)


async def _request_queues(conn: HTTPConnection) -> AsyncIterator[RequestQueues]:
    runtime = _runtime_for(conn)
    queues = RequestQueues(runtime)
    try:
        yield queues
    except BaseException as exc:
        if _ended_normally(exc):
            queues.release(Mode.AFTER_ROUTE)
            queues.release(Mode.AFTER_RESPONSE)
        else:
            queues.discard(Mode.AFTER_ROUTE, exc)
            queues.discard(Mode.AFTER_RESPONSE, exc)
        raise
    queues.release(Mode.AFTER_ROUTE)  # only non-empty for WebSockets (see module docstring)
    queues.release(Mode.AFTER_RESPONSE)


async def _scheduler(
    queues: Annotated[RequestQueues, Depends(_request_queues, scope="request")],
) -> AsyncIterator[TaskScheduler]:
    runtime = queues.runtime
    try:
        yield TaskScheduler(runtime, runtime.config, queues)
    except BaseException as exc:
        if not _ended_normally(exc):
            queues.discard(Mode.AFTER_ROUTE, exc)
        raise
    queues.release(Mode.AFTER_ROUTE)


Tasks = Annotated[TaskScheduler, Depends(_scheduler, scope="function")]
"""Declare ``tasks: Tasks`` in an endpoint or dependency to get the request's scheduler."""
