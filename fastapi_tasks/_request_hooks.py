"""Per-request hooks: when did the endpoint return, did it raise, when was the response sent.

Two hooks, both installed by ``add_tasks()``, each relying only on documented behaviour:

* The ``Tasks`` dependency has a sub-dependency with ``yield`` and ``scope="function"``
  (:func:`endpoint_outcome`). FastAPI closes function-scoped dependencies right after the
  endpoint returned, before the response is sent, and throws the endpoint's exception into them
  (``HTTPException`` and validation errors included), wherever middlewares, exception handlers
  and custom ``APIRoute`` classes sit. So: the endpoint returned -> after-route tasks are
  released; it raised -> every queued task of the request is discarded.
* :class:`TasksMiddleware`, a pure ASGI middleware, creates the request's
  :class:`~fastapi_tasks._scheduler.RequestQueues` and watches the messages the app sends. The
  response is *sent* when its final message was handed to the server (see :func:`_final`):
  after-response tasks are released then. See docs/streaming.md for the exact definition.
  The response is *not* sent, and after-response tasks are discarded, when an exception leaves
  the app, when the app returns without a final message (Starlette's responses stop that way
  when the client disconnects), or when the server reported the disconnect before the final
  message was handed over. A cancellation raised *by* the final ``send`` after it was handed
  over (Hypercorn's trio worker reports the disconnect that follows a complete response
  while the final ``send`` is still running, and Starlette then cancels it) does not undo it.

WebSocket sessions have no response: when the endpoint returns, or ends with
``WebSocketDisconnect`` (the normal way a client leaves), both queues are released, after-route
first; any other exception discards them.

The middleware also runs the task runtime through the ASGI lifespan protocol (see
``_lifespan``): it sits around every lifespan of the app, so the drain comes before all of them
tear down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import anyio
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect

from ._runtime import TaskRuntime
from ._scheduler import RequestQueues, ResponseIncomplete

__all__ = ["QUEUES_KEY", "TasksMiddleware", "endpoint_outcome"]

#: ASGI scope key of the request's :class:`RequestQueues`.
QUEUES_KEY = "fastapi_tasks.queues"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
LifespanHandler = Callable[[ASGIApp, Scope, Receive, Send], Awaitable[None]]


async def endpoint_outcome(conn: HTTPConnection) -> AsyncIterator[None]:
    """The function-scoped sub-dependency of ``Tasks``: its exit is the end of the endpoint."""
    queues: RequestQueues | None = conn.scope.get(QUEUES_KEY)
    try:
        yield
    except BaseException as exc:
        if queues is not None:
            if conn.scope["type"] == "http":
                queues.abort(exc)
            elif queues.raised is None and not isinstance(exc, WebSocketDisconnect):
                queues.raised = exc
        raise
    if queues is not None and conn.scope["type"] == "http" and queues.raised is None:
        queues.endpoint_returned()


class TasksMiddleware:
    def __init__(self, app: ASGIApp, runtime: TaskRuntime, lifespan: LifespanHandler) -> None:
        self.app = app
        self.runtime = runtime
        self.lifespan = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":  # HTTP goes on below, inline: it is every request's path
            if kind == "websocket":
                await self._websocket(scope, receive, send)
            elif kind == "lifespan":
                await self.lifespan(self.app, scope, receive, send)
            else:  # pragma: no cover - no other scope type exists today
                await self.app(scope, receive, send)
            return
        queues = RequestQueues(self.runtime)
        scope[QUEUES_KEY] = queues
        disconnected = False

        async def watch_receive() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
            return message

        async def watch_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                if not queues.route_done:  # not a FastAPI route (the hook did not run)
                    queues.endpoint_returned()
                await send(message)
            elif kind == "http.response.pathsend" or (
                kind == "http.response.body" and not message.get("more_body", False)
            ):
                await _final(queues, send, message, disconnected)
            else:
                await send(message)

        try:
            await self.app(scope, watch_receive, watch_send)
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


async def _final(queues: RequestQueues, send: Send, message: Message, disconnected: bool) -> None:
    """Hand the response's final message to the server; release or discard after-response
    tasks by the outcome."""
    if disconnected:  # the server said the client left before the end
        queues.abort(ResponseIncomplete())
        await send(message)
        return
    try:
        await send(message)
    except BaseException as exc:
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            # Handed over; the cancellation came while the server finished the send.
            _sent(queues)
        else:  # the server could not deliver it (OSError and the like)
            queues.abort(ResponseIncomplete())
        raise
    _sent(queues)


def _sent(queues: RequestQueues) -> None:
    if queues.raised is None:
        queues.response_sent()
    else:
        queues.abort(queues.raised)


def _end_websocket(queues: RequestQueues) -> None:
    if queues.raised is None or isinstance(queues.raised, WebSocketDisconnect):
        queues.response_sent()
    else:
        queues.abort(queues.raised)
