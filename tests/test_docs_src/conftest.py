"""Fixtures for the tests of the documentation examples in ``docs_src/``.

The examples build module-level apps (``app = FastAPI(); add_tasks(app)``), so every test loads
its example module afresh: a new app, a new task runtime, and clean module-level state.
"""

import importlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from asgi_lifespan import LifespanManager

from fastapi_tasks import get_tasks


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def load_example() -> Iterator[Callable[[str], ModuleType]]:
    """``load_example("docs_src.x.y")`` imports the example module fresh (its code runs again)."""
    loaded: list[str] = []

    def load(name: str) -> ModuleType:
        sys.modules.pop(name, None)
        loaded.append(name)
        return importlib.import_module(name)

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


@asynccontextmanager
async def _serve(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture
def serve() -> Callable[[Any], Any]:
    """``async with serve(app) as client``: run the app's lifespan, talk to it with httpx."""
    return _serve


@dataclass
class BackgroundServer:
    """An app whose lifespan runs in a background task, so a test can watch its shutdown."""

    app: Any
    client: httpx.AsyncClient
    stop: anyio.Event
    stopped: anyio.Event

    def begin_shutdown(self) -> None:
        """Start the lifespan shutdown (what SIGTERM does to uvicorn) and return at once."""
        self.stop.set()

    async def wait_until_draining(self) -> None:
        """Return once the task runtime has closed admission (the drain has begun)."""
        with anyio.fail_after(10):
            while get_tasks(self.app).stats().state == "running":
                await anyio.lowlevel.checkpoint()

    async def wait_stopped(self) -> None:
        with anyio.fail_after(10):
            await self.stopped.wait()


@asynccontextmanager
async def _serve_in_background(app: Any) -> AsyncIterator[BackgroundServer]:
    stop = anyio.Event()
    stopped = anyio.Event()

    async def run_lifespan(*, task_status: Any) -> None:
        try:
            async with LifespanManager(app, shutdown_timeout=30) as manager:
                task_status.started(manager.app)
                await stop.wait()
        finally:
            stopped.set()

    async with anyio.create_task_group() as tg:
        asgi_app = await tg.start(run_lifespan)
        transport = httpx.ASGITransport(asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield BackgroundServer(app, client, stop, stopped)
        stop.set()


@pytest.fixture
def serve_in_background() -> Callable[[Any], Any]:
    """``async with serve_in_background(app) as server``: like ``serve``, plus
    ``server.begin_shutdown()`` and ``await server.wait_stopped()``."""
    return _serve_in_background
