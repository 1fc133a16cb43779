"""Per-request hooks: when did the endpoint return, did it raise, when was the response sent.

:class:`TasksMiddleware`, a pure ASGI middleware installed by ``add_tasks()``, creates the
request's :class:`~fastapi_tasks._scheduler.RequestQueues` and watches the messages the app
sends. It relies on the ASGI protocol only, not on how Starlette or FastAPI are built inside:

* ``http.response.start`` means the endpoint returned. With a status below 400, after-route
  tasks are released (before the message is passed on). With a status of 400 or more the
  request *failed*: every queued task is discarded. That is how an endpoint's exception turned
  into a response is seen, wherever that happened: an exception handler (``HTTPException``,
  validation errors, your handlers), a custom ``APIRoute`` class, or a middleware placed
  inside this one. (The log names the exception when one is being handled at that moment.)
* The response is *sent* when its final message was handed to the server (see :func:`_final`):
  after-response tasks are released then. See docs/streaming.md for the exact definition.
  The response is *not* sent, and after-response tasks are discarded, when an exception leaves
  the app, when the app returns without a final message (Starlette's responses stop that way
  when the client disconnects), or when the server reported the disconnect before the final
  message was handed over. A cancellation raised *by* the final ``send`` after it was handed
  over (Hypercorn's trio worker reports the disconnect that follows a complete response
  while the final ``send`` is still running, and Starlette then cancels it) does not undo it.

A dependency with ``yield`` would see the endpoint's exception too, but FastAPI's machinery for
one costs ~30 us per request, and it misses a custom ``APIRoute`` class that answers the
exception itself (such a class runs inside the dependencies' exit stacks).

WebSocket sessions have no response: when the endpoint returns, or ends with
``WebSocketDisconnect`` (the normal way a client leaves), both queues are released, after-route
first; any other exception, or a close code other than 1000 (normal) and 1001 (going away),
discards them.

The middleware also runs the task runtime through the ASGI lifespan protocol (see
``_lifespan``): it sits around every lifespan of the app, so the drain comes before all of them
tear down.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
from starlette.websockets import WebSocketDisconnect

from ._runtime import TaskRuntime
from ._scheduler import ErrorResponse, RequestQueues, ResponseIncomplete

__all__ = ["QUEUES_KEY", "TasksMiddleware"]

#: ASGI scope key of the request's :class:`RequestQueues`.
QUEUES_KEY = "fastapi_tasks.queues"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
LifespanHandler = Callable[[ASGIApp, Scope, Receive, Send], Awaitable[None]]


class TasksMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        runtime: TaskRuntime,
        lifespan: LifespanHandler,
        start_unmanaged: Callable[[], None],
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.lifespan = lifespan
        #: Starts the runtime of a mounted app whose runtime no lifespan runs (see _lifespan).
        self.start_unmanaged = start_unmanaged

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
        runtime = self.runtime
        if runtime.state == "idle" and "router" in scope:  # mounted, and no lifespan runs it
            self.start_unmanaged()
        queues = RequestQueues(runtime)
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
                status = message["status"]
                if status >= 400:
                    queues.abort(_failure(f"HTTP status {status}"))
                    await send(message)
                    return
                queues.endpoint_returned()
                await send(message)
                if scope["method"] == "HEAD":  # the whole answer to a HEAD is its head
                    queues.response_sent()
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

        async def watch_send(message: Message) -> None:
            kind = message["type"]
            if kind == "websocket.close":
                code = message.get("code", 1000)
                if code not in (1000, 1001) and queues.raised is None:
                    queues.raised = _failure(f"WebSocket close code {code}")
            elif kind == "websocket.http.response.start" and queues.raised is None:
                queues.raised = _failure(f"HTTP status {message['status']} (WebSocket refused)")
            await send(message)

        try:
            await self.app(scope, receive, watch_send)
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


def _failure(what: str) -> BaseException:
    """The reason an error answer discards tasks: the exception being handled, if any (an
    exception handler sends its response while handling it), else the answer itself."""
    return sys.exc_info()[1] or ErrorResponse(what)


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
