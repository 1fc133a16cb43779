"""Per-request hooks: when did the endpoint return, did it raise, when was the response sent.

FastAPI's dependencies with ``yield`` could answer these, but FastAPI wraps every such dependency
in exit stacks and cancel scopes that cost ~35 us per request. The ``Tasks`` dependency is a plain
``async def`` instead, and two cheap hooks, both installed by ``add_tasks()``, do the timing:

* :class:`TasksMiddleware`, a pure ASGI middleware, creates the request's
  :class:`~fastapi_tasks._scheduler.RequestQueues` and watches the messages the app sends.
  ``http.response.start`` means the endpoint returned and the response is about to go out:
  after-route tasks are released (before the message is passed on). The last
  ``http.response.body`` means the response was sent (for a streaming response, after its last
  chunk), and so does ``http.response.pathsend`` (a ``FileResponse`` on a server with the
  pathsend extension, such as Granian): after-response tasks are released. An exception
  leaving the app, or an app that returns without finishing its response, discards whatever
  is still queued.
* Exceptions the app *handles* (``HTTPException``, validation errors, your own exception
  handlers) turn into ordinary responses inside the route, out of the middleware's sight. So
  ``add_tasks()`` swaps ``app.exception_handlers`` for :class:`MarkingExceptionHandlers`, a
  ``dict`` whose ``items()`` (what Starlette reads when it builds the middleware stack) yields
  each handler wrapped to record the exception on the request's queues first. The queued tasks
  are then discarded instead of released. Handlers registered at any time before the app starts
  are covered; ``app.exception_handlers[key]`` still returns your own handler.

WebSocket sessions have no response: when the endpoint returns, or ends with
``WebSocketDisconnect`` (the normal way a client leaves), both queues are released, after-route
first; any other exception discards them.

Limitation: a middleware placed *inside* this one that catches an endpoint's exception and
answers with a normal response itself (without an exception handler) hides the exception; the
queued tasks are then released. Use an exception handler for that instead.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from ._callables import is_async_callable
from ._runtime import TaskRuntime
from ._scheduler import RequestQueues, ResponseIncomplete

__all__ = ["QUEUES_KEY", "MarkingExceptionHandlers", "TasksMiddleware"]

#: ASGI scope key of the request's :class:`RequestQueues`.
QUEUES_KEY = "fastapi_tasks.queues"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Handler = Callable[[Any, Exception], Any]


class TasksMiddleware:
    def __init__(self, app: ASGIApp, runtime: TaskRuntime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":  # HTTP goes on below, inline: it is every request's path
            if kind == "websocket":
                await self._websocket(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        queues = RequestQueues(self.runtime)
        scope[QUEUES_KEY] = queues

        async def watch(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                if queues.raised is None:
                    queues.endpoint_returned()
                else:
                    queues.abort(queues.raised)
                await send(message)
            else:
                await send(message)
                if (
                    kind == "http.response.body" and not message.get("more_body", False)
                ) or kind == "http.response.pathsend":  # a file handed over whole (Granian)
                    if queues.raised is None:
                        queues.response_sent()
                    else:
                        queues.abort(queues.raised)

        try:
            await self.app(scope, receive, watch)
        except BaseException as exc:
            queues.abort(exc)
            raise
        if not queues.response_done:
            queues.abort(ResponseIncomplete())

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        queues = RequestQueues(self.runtime)
        scope[QUEUES_KEY] = queues
        try:
            await self.app(scope, receive, send)
        except WebSocketDisconnect:
            _end_websocket(queues)
            raise
        except BaseException as exc:
            queues.abort(exc)
            raise
        _end_websocket(queues)


def _end_websocket(queues: RequestQueues) -> None:
    if queues.raised is None or isinstance(queues.raised, WebSocketDisconnect):
        queues.response_sent()
    else:
        queues.abort(queues.raised)


def _marking(handler: Handler) -> Handler:
    is_async = is_async_callable(handler)

    @functools.wraps(handler)
    async def mark_then_handle(conn: Any, exc: Exception) -> Any:
        queues = conn.scope.get(QUEUES_KEY)
        if queues is not None and queues.raised is None:
            queues.raised = exc
        if is_async:
            return await handler(conn, exc)
        return await run_in_threadpool(handler, conn, exc)

    return mark_then_handle


class MarkingExceptionHandlers(dict[Any, Handler]):
    """``app.exception_handlers`` whose ``items()`` yields handlers that first record the
    exception on the request's queues. Lookups by key return the handlers unchanged."""

    def items(self) -> Iterator[tuple[Any, Handler]]:  # type: ignore[override]
        for key, handler in super().items():
            yield key, _marking(handler)
