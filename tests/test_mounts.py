"""Mounted FastAPI apps: they share the outer app's runtime, or the outer app's lifespan runs
their own; an HTTPException inside a mounted app discards its deferred tasks."""

import logging

import anyio
import pytest
from fastapi import FastAPI, HTTPException

from fastapi_tasks import FastAPITasksAppStartedError, Tasks, add_tasks, get_tasks
from fastapi_tasks.testing import wait_for_tasks

from .conftest import raises_unwrapped, serve

pytestmark = pytest.mark.anyio


def sub_app(ran: list[str], done: anyio.Event) -> FastAPI:
    sub = FastAPI()

    async def record(tag: str) -> None:
        ran.append(tag)
        done.set()

    @sub.get("/ok")
    async def ok(tasks: Tasks) -> str:
        tasks.after_response.schedule(record, "sub")
        return "ok"

    @sub.get("/missing")
    async def missing(tasks: Tasks) -> None:
        tasks.after_route.schedule(record, "must not run")
        tasks.after_response.schedule(record, "must not run")
        raise HTTPException(status_code=404)

    return sub


@pytest.mark.parametrize("own_runtime", [False, True])
async def test_a_mounted_app_runs_its_tasks(own_runtime: bool) -> None:
    ran: list[str] = []
    done = anyio.Event()
    sub = sub_app(ran, done)
    if own_runtime:
        add_tasks(sub)
    app = FastAPI()
    add_tasks(app)
    app.mount("/sub", sub)
    async with serve(app) as client:
        assert (await client.get("/sub/ok")).status_code == 200
        with anyio.fail_after(5):
            await done.wait()
        assert (await client.get("/sub/missing")).status_code == 404
        await wait_for_tasks(app)
        runtime_app = sub if own_runtime else app
        stats = get_tasks(runtime_app).stats()
        if own_runtime:
            assert get_tasks(sub).stats().state == "running"
    assert ran == ["sub"]
    assert (stats.succeeded, stats.discarded) == (1, 2)
    if own_runtime:
        assert get_tasks(sub).stats().state == "stopped"  # drained with the outer app


async def test_a_mounted_app_with_its_own_runtime_under_a_plain_app_uses_task_runtime() -> None:
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    from fastapi_tasks import task_runtime

    ran: list[str] = []
    done = anyio.Event()
    sub = sub_app(ran, done)
    add_tasks(sub)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with task_runtime(sub):
            yield

    app = FastAPI(lifespan=lifespan)
    app.mount("/sub", sub)
    async with serve(app) as client:
        assert (await client.get("/sub/ok")).status_code == 200
        with anyio.fail_after(5):
            await done.wait()
    assert ran == ["sub"]
    assert get_tasks(sub).stats().state == "stopped"


async def test_one_app_mounted_under_two_running_apps_is_refused_at_startup() -> None:
    sub = FastAPI()
    add_tasks(sub)
    first, second = FastAPI(), FastAPI()
    for outer in (first, second):
        add_tasks(outer)
        outer.mount("/sub", sub)
    async with serve(first):
        with raises_unwrapped(FastAPITasksAppStartedError, match="already running"):
            async with serve(second):
                pass  # pragma: no cover


async def test_a_mounted_runtime_no_lifespan_runs_starts_on_the_first_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []
    done = anyio.Event()
    sub = sub_app(ran, done)
    add_tasks(sub)
    app = FastAPI()  # no add_tasks(), no task_runtime(sub): nothing runs sub's runtime
    app.mount("/sub", sub)
    with caplog.at_level(logging.WARNING, logger="fastapi_tasks"):
        async with serve(app) as client:
            for _ in range(2):
                assert (await client.get("/sub/ok")).status_code == 200
            with anyio.fail_after(5):
                await wait_for_tasks(sub)
            assert get_tasks(sub).stats().state == "running"
    assert ran == ["sub", "sub"]
    warnings = [r.getMessage() for r in caplog.records if "first request" in r.getMessage()]
    assert len(warnings) == 1  # said once, on the first request
    assert "No drain will run" in warnings[0]
    get_tasks(sub)._runtime.stop()  # what the interpreter's exit would leave behind
