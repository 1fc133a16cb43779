"""Shared fixtures: apps wired with add_tasks and clients that run the real lifespan."""

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from fastapi_tasks import add_tasks


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def serve(app: FastAPI, **client_kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and yield an httpx client talking to it over real ASGI."""
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(manager.app, **client_kwargs)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
def make_app() -> Callable[..., FastAPI]:
    """``make_app(**add_tasks_kwargs)``: a fresh FastAPI app with the task runtime wired in."""

    def factory(**kwargs: Any) -> FastAPI:
        app = FastAPI()
        add_tasks(app, **kwargs)
        return app

    return factory


@pytest.fixture
def task_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="fastapi_tasks")
    return caplog
