"""Every lifespan of the app tears down after the drain, whenever it was added: the app's own
``lifespan=`` and routers' lifespans merged by ``include_router()`` before or after
``add_tasks()``."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import pytest
from fastapi import APIRouter, FastAPI

from fastapi_tasks import add_tasks, get_tasks

from .conftest import serve

pytestmark = pytest.mark.anyio


def recording(events: list[str], name: str) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        events.append(f"{name} up")
        yield
        events.append(f"{name} down")

    return lifespan


@pytest.mark.parametrize("router_added", ["before", "after"])
async def test_every_lifespan_tears_down_after_the_drain(router_added: str) -> None:
    events: list[str] = []
    app = FastAPI(lifespan=recording(events, "app"))
    router = APIRouter(lifespan=recording(events, "router"))
    if router_added == "before":
        app.include_router(router)
    add_tasks(app)
    if router_added == "after":
        app.include_router(router)

    async def flush_on_shutdown() -> None:
        while get_tasks(app).stats().state != "draining":  # runs until the drain begins
            await anyio.sleep(0.005)
        await anyio.sleep(0)
        events.append("shielded task done")

    async with serve(app):
        task = get_tasks(app).task(shield=True).schedule(flush_on_shutdown)
        await task.started.wait()
    assert task.state.value == "succeeded"
    assert events.index("shielded task done") < events.index("router down")
    assert events.index("shielded task done") < events.index("app down")
    assert {"app up", "router up"} <= set(events[: events.index("shielded task done")])
