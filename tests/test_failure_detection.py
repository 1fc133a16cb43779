"""Deferred tasks are discarded when the endpoint raised, wherever the exception is turned into
a response: an exception handler, a custom ``APIRoute`` class, or a middleware added before
``add_tasks()``. Detection relies on ``Tasks`` being a dependency with ``yield``, not on how
Starlette builds its middleware stack."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import anyio
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from fastapi_tasks import Tasks, add_tasks, get_tasks
from fastapi_tasks.testing import wait_for_tasks

from .conftest import serve

pytestmark = pytest.mark.anyio


def never_runs() -> None:  # pragma: no cover - must be discarded
    raise AssertionError("a discarded task ran")


def add_failing_routes(app: FastAPI | APIRouter) -> None:
    @app.get("/boom")
    async def boom(tasks: Tasks) -> None:
        tasks.after_route.schedule(never_runs)
        tasks.after_response.schedule(never_runs)
        raise RuntimeError("boom")

    @app.get("/missing")
    async def missing(tasks: Tasks) -> None:
        tasks.after_route.schedule(never_runs)
        tasks.after_response.schedule(never_runs)
        raise HTTPException(status_code=404)


async def discarded_after(app: FastAPI, path: str, status: int) -> None:
    async with serve(app, raise_app_exceptions=False) as client:
        response = await client.get(path)
        assert response.status_code == status
        await wait_for_tasks(app)
        stats = get_tasks(app).stats()
    assert (stats.discarded, stats.succeeded, stats.failed) == (2, 0, 0)


class CatchAllRoute(APIRoute):
    """A route class that answers every exception of its endpoint with its own 500."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except Exception:
                return JSONResponse({"detail": "caught by the route class"}, status_code=500)

        return handler


@pytest.mark.parametrize(("path", "status"), [("/boom", 500), ("/missing", 500)])
async def test_a_custom_route_class_that_answers_the_exception(path: str, status: int) -> None:
    app = FastAPI()
    router = APIRouter(route_class=CatchAllRoute)
    add_failing_routes(router)
    app.include_router(router)
    add_tasks(app)
    await discarded_after(app, path, status)


@pytest.mark.parametrize("decorator", [True, False])
@pytest.mark.parametrize(("path", "status"), [("/boom", 500), ("/missing", 404)])
async def test_a_middleware_added_before_add_tasks_that_answers_the_exception(
    decorator: bool, path: str, status: int
) -> None:
    app = FastAPI()
    add_failing_routes(app)

    async def catch(request: Request, call_next: RequestResponseEndpoint) -> Response:
        try:
            return await call_next(request)
        except RuntimeError:
            return JSONResponse({"detail": "caught by a middleware"}, status_code=500)

    if decorator:
        app.middleware("http")(catch)
    else:
        app.add_middleware(BaseHTTPMiddleware, dispatch=catch)
    add_tasks(app)
    await discarded_after(app, path, status)


async def test_exception_handlers_registered_after_add_tasks() -> None:
    app = FastAPI()
    add_tasks(app)
    add_failing_routes(app)

    @app.exception_handler(RuntimeError)
    async def answer(request: Request, exc: RuntimeError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    await discarded_after(app, "/boom", 503)


async def test_a_user_yield_dependency_may_depend_on_tasks() -> None:
    """A request-scoped dependency with ``yield`` that takes ``Tasks`` is accepted and works."""
    app = FastAPI()
    add_tasks(app)
    ran = anyio.Event()
    teardown: list[str] = []

    async def mark() -> None:
        ran.set()

    async def audit(tasks: Tasks) -> AsyncIterator[str]:
        tasks.after_response.schedule(mark)
        yield "audited"
        teardown.append("done")

    @app.get("/ok")
    async def ok(value: Annotated[str, Depends(audit)], tasks: Tasks) -> str:
        return value

    async with serve(app) as client:
        response = await client.get("/ok")
        with anyio.fail_after(5):
            await ran.wait()
    assert response.json() == "audited"
    assert teardown == ["done"]


async def test_a_plain_success_still_releases_both_modes() -> None:
    app = FastAPI()
    add_tasks(app)
    order: list[str] = []
    done = anyio.Event()

    async def record(tag: str) -> None:
        order.append(tag)
        if tag == "after_response":
            done.set()

    @app.get("/")
    async def index(tasks: Tasks) -> dict[str, Any]:
        tasks.after_response.schedule(record, "after_response")
        tasks.after_route.schedule(record, "after_route")
        return {}

    async with serve(app) as client:
        assert (await client.get("/")).status_code == 200
        with anyio.fail_after(5):
            await done.wait()
        await wait_for_tasks(app)
    assert sorted(order) == ["after_response", "after_route"]
