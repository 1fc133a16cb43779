"""The app every server of the real-server matrix (tests/test_server_matrix.py) serves.

Tasks leave their outcome in files under ``$MATRIX_OUT``, so the tests can check them whatever
worker served the request: a deferred task ``<tag>.<mode>`` writes the file ``<tag>.<mode>``
when it runs, and a watcher (a plain task started at once) writes ``<tag>.<mode>.state`` with
the task's final state (``completed``, ``cancelled``, ...) once it has one. Files are written
atomically (a temporary name, then a rename), so a poller never reads half a file.

Shapes the matrix runs the scenarios through, chosen by the URL:

* ``/...``: the plain app.
* ``/mw/...``: the same routes behind a ``BaseHTTPMiddleware`` that sits *inside* the task
  middleware (it is added before ``add_tasks()``) and turns an endpoint's exception into a 500
  response itself.
* ``/caught/...``: a router whose route class turns an endpoint's exception into a 500 response.
* ``/sub-shared/...`` and ``/sub-own/...``: mounted FastAPI sub-apps, without and with their
  own ``add_tasks()``.

A router with its own lifespan (a stand-in for a connection pool) is included after
``add_tasks()``: shielded tasks record whether the pool was still open when they finished.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.types import ASGIApp, Receive, Scope, Send

from fastapi_tasks import AnyTask, Tasks, TaskScheduler, add_tasks, get_tasks

OUT = Path(os.environ.get("MATRIX_OUT", "."))
#: A file the /file endpoint serves (several chunks of Starlette's 64 KiB).
SERVED = OUT / "served.bin"
SERVED_SIZE = 200_000


def write(name: str, text: str | bytes) -> None:
    scratch = OUT / f".{name}.{os.getpid()}.tmp"
    scratch.write_bytes(text if isinstance(text, bytes) else text.encode())
    os.replace(scratch, OUT / name)


# --- the router lifespan: a "pool" shielded tasks use during the drain -------------------------


class Pool:
    open = False


POOL = Pool()


@asynccontextmanager
async def pool_lifespan(app: Any) -> AsyncIterator[None]:
    POOL.open = True
    yield
    POOL.open = False


# --- tasks --------------------------------------------------------------------------------------


async def async_record(name: str) -> None:
    await anyio.lowlevel.checkpoint()
    write(name, "ran")


def sync_record(name: str) -> None:
    write(name, "ran")


async def watch(task: AnyTask, name: str) -> None:
    await task.wait()
    write(f"{name}.state", task.state.value)


def track(scheduler: TaskScheduler, tasks: Tasks, name: str, kind: str = "async") -> AnyTask:
    """Schedule the task ``name`` on ``scheduler`` (a mode of ``tasks``), and a watcher, at once,
    that records its final state."""
    job = async_record if kind == "async" else sync_record
    task: AnyTask = scheduler.task(name=name).schedule(job, name)
    tasks.schedule(watch, task, name)
    return task


def ran(task: AnyTask) -> bool:
    """Whether the task of :func:`track` has run (its file exists)."""
    return (OUT / task.name).exists()


def draining() -> bool:
    return get_tasks(app).stats().state == "draining"


async def shielded_async(name: str, seconds: float) -> None:
    """Wait for the drain (at most ``seconds``), work a little longer, and record whether the
    router's pool is still open."""
    with anyio.move_on_after(seconds):
        while not draining():
            await anyio.sleep(0.01)
    await anyio.sleep(0.1)
    write(name, f"pool open: {POOL.open}")


def shielded_sync(name: str, seconds: float) -> None:
    """:func:`shielded_async` on a thread."""
    deadline = time.monotonic() + seconds
    while not anyio.from_thread.run_sync(draining) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    write(name, f"pool open: {POOL.open}")


async def endless_async(name: str) -> None:
    await anyio.sleep(3600)
    write(name, "should have been cancelled")  # pragma: no cover


def endless_sync(name: str) -> None:
    while True:
        time.sleep(0.01)
        anyio.from_thread.check_cancelled()  # lets the drain stop it


# --- the app ------------------------------------------------------------------------------------


class CaughtRoute(APIRoute):
    """A route class that answers 500 itself when the endpoint raises."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def catching(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return JSONResponse({"caught": repr(exc)}, status_code=500)

        return catching


async def catch_in_middleware(request: Request, call_next: RequestResponseEndpoint) -> Response:
    try:
        return await call_next(request)
    except Exception as exc:
        return JSONResponse({"caught in middleware": repr(exc)}, status_code=500)


class UnderMiddleware:
    """Serves ``/mw/<path>`` as ``/<path>`` through a ``BaseHTTPMiddleware``; other paths
    directly."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.wrapped = BaseHTTPMiddleware(app, dispatch=catch_in_middleware)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/mw/"):
            scope = {**scope, "path": path[3:], "raw_path": path[3:].encode()}
            await self.wrapped(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def routes(route_class: type[APIRoute] = APIRoute) -> APIRouter:
    """The scenario endpoints (served at the root, under /caught with a catching route class, and
    by the mounted sub-apps)."""
    router = APIRouter(route_class=route_class)

    @router.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        return {"pid": os.getpid(), **get_tasks(request.app).stats().to_dict()}

    @router.post("/modes/{kind}")
    async def modes(kind: str, tag: str, tasks: Tasks) -> dict[str, Any]:
        now = track(tasks, tasks, f"{tag}.now", kind)
        route = track(tasks.after_route, tasks, f"{tag}.after_route", kind)
        response = track(tasks.after_response, tasks, f"{tag}.after_response", kind)
        await now.wait()  # a plain task starts at once, and the deferred ones wait meanwhile
        early = [task.name for task in (route, response) if ran(task)]
        return {"now": now.state.value, "deferred_ran_before_return": early}

    @router.post("/modes-def/{kind}")
    def modes_def(kind: str, tag: str, tasks: Tasks) -> str:  # a def endpoint
        for mode, scheduler in (
            ("now", tasks),
            ("after_route", tasks.after_route),
            ("after_response", tasks.after_response),
        ):
            track(scheduler, tasks, f"{tag}.{mode}", kind)
        return "scheduled"

    @router.api_route("/stream", methods=["GET", "HEAD"])
    async def stream(
        tag: str,
        tasks: Tasks,
        chunks: int = 20,
        sync: bool = False,
        endless: bool = False,
        delay: float = 0.001,
        shield: bool = False,
    ) -> StreamingResponse:
        route = track(tasks.after_route, tasks, f"{tag}.after_route")
        if shield:  # a shielded one that takes a while (for the SIGTERM scenario)
            scheduler = tasks.after_response.task(name=f"{tag}.after_response", shield=True)
            response = scheduler.schedule(shielded_async, f"{tag}.after_response", 10)
        else:
            response = track(tasks.after_response, tasks, f"{tag}.after_response")

        def last_line() -> str:
            return f"after_response ran before the last chunk: {ran(response)}\n"

        async def produce() -> AsyncIterator[str]:
            try:
                with anyio.move_on_after(5):
                    await route.wait()  # released when the headers went out
                yield f"after_route: {route.state.value}\n"
                i = 0
                while endless or i < chunks:
                    await anyio.sleep(delay)  # stands for a data source
                    yield f"{i},{'x' * 100}\n"
                    i += 1
                yield last_line()
            finally:
                write(f"{tag}.generator-closed", "closed")

        def produce_sync() -> Iterator[str]:  # run by Starlette on its thread pool
            yield f"after_route: {anyio.from_thread.run(waited_state, route)}\n"
            for i in range(chunks):
                yield f"{i},{'x' * 100}\n"
            yield last_line()

        body = produce_sync() if sync else produce()
        return StreamingResponse(body, media_type="text/plain")

    @router.get("/sse", response_class=EventSourceResponse)
    async def sse(tag: str, tasks: Tasks, events: int = 20) -> AsyncIterable[ServerSentEvent]:
        # The body of a streaming endpoint runs while the response is being sent: its
        # after-response task waits for the last event.
        response = track(tasks.after_response, tasks, f"{tag}.after_response")
        try:
            i = 0
            while events < 0 or i < events:
                await anyio.sleep(0.001)
                yield ServerSentEvent(data={"i": i}, event="tick")
                i += 1
            yield ServerSentEvent(data={"after_response ran before the last event": ran(response)})
        finally:
            write(f"{tag}.generator-closed", "closed")

    @router.get("/jsonl")
    async def jsonl(tag: str, tasks: Tasks, lines: int = 20) -> AsyncIterable[dict[str, Any]]:
        response = track(tasks.after_response, tasks, f"{tag}.after_response")
        try:
            i = 0
            while lines < 0 or i < lines:
                await anyio.sleep(0.001)
                yield {"i": i}
                i += 1
            yield {"after_response ran before the last line": ran(response)}
        finally:
            write(f"{tag}.generator-closed", "closed")

    @router.get("/file")
    async def file(tag: str, tasks: Tasks, request: Request) -> FileResponse:
        track(tasks.after_response, tasks, f"{tag}.after_response")
        pathsend = "http.response.pathsend" in request.scope.get("extensions", {})
        return FileResponse(SERVED, headers={"x-pathsend": str(pathsend)})

    @router.api_route("/plain", methods=["GET", "HEAD"])
    async def plain(tag: str, tasks: Tasks, status: int = 200, body: str = "") -> Response:
        track(tasks.after_route, tasks, f"{tag}.after_route")
        track(tasks.after_response, tasks, f"{tag}.after_response")
        if status in (204, 304):
            return Response(status_code=status)
        return PlainTextResponse(body, status_code=status)

    @router.post("/raise/{kind}")
    async def raise_(kind: str, tag: str, tasks: Tasks) -> str:
        track(tasks, tasks, f"{tag}.now")
        track(tasks.after_route, tasks, f"{tag}.after_route")
        track(tasks.after_response, tasks, f"{tag}.after_response")
        if kind == "http":
            raise HTTPException(status_code=409, detail="conflict")
        if kind == "handled":
            raise HandledError("answered by an exception handler")
        raise RuntimeError("the endpoint failed")

    @router.post("/shielded")
    async def shielded(name: str, tasks: Tasks, kind: str = "async", seconds: float = 10) -> int:
        """A shielded task that waits for the drain (started before the answer), and an endless
        unshielded one."""
        job = shielded_async if kind == "async" else shielded_sync
        task = tasks.task(name=name, shield=True).schedule(job, name, seconds)
        endless = tasks.schedule(endless_async if kind == "async" else endless_sync, f"{name}.x")
        await task.started.wait()
        await endless.started.wait()
        return os.getpid()

    return router


async def waited_state(task: AnyTask) -> str:
    with anyio.move_on_after(5):
        await task.wait()
    return task.state.value


class HandledError(Exception):
    pass


async def handle(request: Request, exc: Exception) -> Response:
    return JSONResponse({"handled": str(exc)}, status_code=418)


def create_app() -> FastAPI:
    if "MATRIX_OUT" in os.environ:  # (each worker writes it; the rename makes that safe)
        write(SERVED.name, b"0123456789abcdef" * (SERVED_SIZE // 16))
    app = FastAPI()
    app.add_exception_handler(HandledError, handle)
    app.add_middleware(UnderMiddleware)  # added before add_tasks(): it sits inside
    add_tasks(app)
    app.include_router(routes())
    app.include_router(routes(CaughtRoute), prefix="/caught")
    app.include_router(APIRouter(lifespan=pool_lifespan))  # included after add_tasks()

    shared = FastAPI()  # no add_tasks(): uses the parent's runtime
    shared.include_router(routes())
    app.mount("/sub-shared", shared)
    own = FastAPI()
    add_tasks(own)
    own.include_router(routes())
    app.mount("/sub-own", own)
    return app


app = create_app()
