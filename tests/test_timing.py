"""The three timing modes: when deferred tasks are released, in which order, and when they are
discarded. Some tests drive the ASGI app by hand to observe the exact moment of each message."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from fastapi_tasks import FastAPITasksError, Tasks, TaskState, get_tasks
from fastapi_tasks.testing import wait_for_tasks

from .conftest import http_scope, serve

pytestmark = pytest.mark.anyio

Message = dict[str, Any]


async def call_asgi(
    app: Any, path: str, on_send: Callable[[Message], Awaitable[None] | None]
) -> list[Message]:
    """One GET through the raw ASGI interface; ``on_send`` sees each message before it 'leaves'."""
    sent: list[Message] = []
    scope = http_scope("GET", path, state={})

    requested = False

    async def receive() -> Message:
        nonlocal requested
        if requested:  # later calls wait for a disconnect that never comes
            await anyio.sleep_forever()
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        result = on_send(message)
        if result is not None:
            await result
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def noop() -> None:
    pass


async def test_after_route_is_released_after_the_endpoint_and_before_the_response(
    make_app: Any,
) -> None:
    app = make_app()
    observed: dict[str, Any] = {}

    @app.get("/")
    async def endpoint(tasks: Tasks) -> str:
        tasks.after_route.schedule(noop)
        observed["in endpoint"] = tasks.stats().deferred
        return "ok"

    def on_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            stats = get_tasks(app).stats()
            observed["at response start"] = (stats.deferred, stats.scheduled)

    async with LifespanManager(app):
        await call_asgi(app, "/", on_send)
        await wait_for_tasks(app)
    assert observed == {"in endpoint": 1, "at response start": (0, 1)}


async def test_after_response_is_released_once_the_last_chunk_is_sent(make_app: Any) -> None:
    app = make_app()
    observed: list[tuple[str, int, int]] = []

    @app.get("/stream")
    async def stream(tasks: Tasks) -> StreamingResponse:
        tasks.after_response.schedule(noop)

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"chunk {i}\n".encode()

        return StreamingResponse(chunks())

    def on_send(message: Message) -> None:
        stats = get_tasks(app).stats()
        observed.append((message["type"], stats.deferred, stats.scheduled))

    async with LifespanManager(app):
        sent = await call_asgi(app, "/stream", on_send)
        stats = get_tasks(app).stats()
        await wait_for_tasks(app)
    # every message, the last chunk included, went out while the task was still queued
    assert all(deferred == 1 and scheduled == 0 for _, deferred, scheduled in observed)
    assert sent[-1]["type"] == "http.response.body"
    assert (stats.deferred, stats.scheduled) == (0, 1)


async def test_deferred_tasks_keep_their_order(make_app: Any) -> None:
    app = make_app()
    order: list[str] = []

    async def record(tag: str) -> None:
        order.append(tag)

    @app.get("/")
    async def endpoint(tasks: Tasks) -> None:
        for i in range(5):
            tasks.after_response.schedule(record, f"response {i}")
        for i in range(5):
            tasks.after_route.schedule(record, f"route {i}")
        order.append("endpoint")

    async with serve(app) as client:
        await client.get("/")
        await wait_for_tasks(app)
    assert order == ["endpoint"] + [f"route {i}" for i in range(5)] + [
        f"response {i}" for i in range(5)
    ]


async def test_after_route_tasks_do_not_hold_the_response(make_app: Any) -> None:
    app = make_app()
    release = anyio.Event()
    started = anyio.Event()
    running = 0

    async def slow() -> None:
        nonlocal running
        running += 1
        if running == 2:
            started.set()
        await release.wait()

    @app.get("/")
    async def endpoint(tasks: Tasks) -> str:
        tasks.after_route.schedule(slow)
        tasks.after_response.schedule(slow)
        return "ok"

    async with serve(app) as client:
        with anyio.fail_after(5):
            assert (await client.get("/")).json() == "ok"  # returns while both still wait
            await started.wait()
        assert get_tasks(app).stats().running == 2
        release.set()


async def test_all_three_modes_in_one_endpoint(make_app: Any) -> None:
    app = make_app()
    timeline: list[str] = []
    endpoint_may_return = anyio.Event()

    async def immediate() -> None:
        timeline.append("immediate started")
        endpoint_may_return.set()

    async def record(tag: str) -> None:
        timeline.append(tag)

    @app.get("/")
    async def endpoint(tasks: Tasks) -> str:
        tasks.after_response.schedule(record, "after response")
        tasks.after_route.schedule(record, "after route")
        tasks.schedule(immediate)
        await endpoint_may_return.wait()
        timeline.append("endpoint returns")
        return "ok"

    async with serve(app) as client:
        await client.get("/")
        await wait_for_tasks(app)
    assert timeline == ["immediate started", "endpoint returns", "after route", "after response"]


@pytest.mark.parametrize("mode", ["after_route", "after_response"])
async def test_deferred_tasks_are_discarded_when_the_endpoint_raises_http_exception(
    make_app: Any, mode: str, task_logs: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    ran: list[str] = []

    async def record(tag: str) -> None:
        ran.append(tag)

    @app.get("/")
    async def endpoint(tasks: Tasks) -> None:
        tasks.schedule(record, "immediate")
        getattr(tasks, mode).task(name="must-not-run").schedule(record, "deferred")
        raise HTTPException(status_code=409, detail="conflict")

    async with serve(app) as client:
        assert (await client.get("/")).status_code == 409
        await wait_for_tasks(app)
        stats = get_tasks(app).stats()
    assert ran == ["immediate"]
    assert (stats.discarded, stats.deferred, stats.scheduled) == (1, 0, 1)
    lines = [r.getMessage() for r in task_logs.records if "discarded" in r.getMessage()]
    assert len(lines) == 1
    assert "must-not-run" in lines[0]
    assert "HTTPException" in lines[0]


async def test_deferred_tasks_are_discarded_on_an_unhandled_exception(
    make_app: Any, task_logs: pytest.LogCaptureFixture
) -> None:
    app = make_app()

    @app.get("/")
    async def endpoint(tasks: Tasks) -> None:
        tasks.after_route.schedule(noop)
        tasks.after_response.schedule(noop)
        raise RuntimeError("boom")

    async with serve(app, raise_app_exceptions=False) as client:
        assert (await client.get("/")).status_code == 500
        stats = get_tasks(app).stats()
    assert (stats.discarded, stats.scheduled, stats.deferred) == (2, 0, 0)


async def test_custom_exception_handlers_still_discard_and_still_answer(make_app: Any) -> None:
    app = make_app()

    class OutOfStock(Exception):
        pass

    @app.exception_handler(OutOfStock)
    def out_of_stock(request: Request, exc: OutOfStock) -> JSONResponse:  # a sync handler
        return JSONResponse({"error": "out of stock"}, status_code=410)

    assert app.exception_handlers[OutOfStock] is out_of_stock  # lookups are untouched

    @app.get("/")
    async def endpoint(tasks: Tasks) -> None:
        tasks.after_route.schedule(noop)
        raise OutOfStock

    async with serve(app) as client:
        response = await client.get("/")
        assert (response.status_code, response.json()) == (410, {"error": "out of stock"})
        assert get_tasks(app).stats().discarded == 1


async def test_a_validation_error_after_a_dependency_scheduled_discards(make_app: Any) -> None:
    app = make_app()

    async def audit(tasks: Tasks) -> None:
        tasks.after_response.schedule(noop)

    from fastapi import Depends

    @app.get("/items/{item_id}", dependencies=[Depends(audit)])
    async def endpoint(item_id: int) -> int:
        return item_id

    async with serve(app) as client:
        assert (await client.get("/items/not-a-number")).status_code == 422
        assert get_tasks(app).stats().discarded == 1
        assert (await client.get("/items/3")).json() == 3
        await wait_for_tasks(app)
        assert get_tasks(app).stats().succeeded == 1


async def test_a_response_that_never_completes_discards_after_response(make_app: Any) -> None:
    app = make_app()

    @app.get("/")
    async def endpoint(tasks: Tasks) -> str:
        tasks.after_response.schedule(noop)
        return "ok"

    def disconnect(message: Message) -> None:
        if message["type"] == "http.response.body":
            raise OSError("client went away")

    async with LifespanManager(app):
        with pytest.raises(OSError, match="client went away"):
            await call_asgi(app, "/", disconnect)
        stats = get_tasks(app).stats()
    assert (stats.discarded, stats.scheduled, stats.deferred) == (1, 0, 0)


async def test_after_modes_scheduled_after_their_moment_start_at_once(make_app: Any) -> None:
    app = make_app()
    handles: list[Any] = []

    @app.get("/stream")
    async def stream(tasks: Tasks) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first"
            # the response has started: an after-route task scheduled now starts at once
            handles.append(tasks.after_route.schedule(noop))
            yield b"second"

        return StreamingResponse(chunks())

    async with serve(app) as client:
        assert (await client.get("/stream")).content == b"firstsecond"
        await wait_for_tasks(app)
    assert handles[0].state is TaskState.SUCCEEDED


async def test_after_modes_need_a_request(make_app: Any) -> None:
    app = make_app()
    async with serve(app):
        with pytest.raises(FastAPITasksError, match="needs a request"):
            get_tasks(app).after_route  # noqa: B018
        with pytest.raises(FastAPITasksError, match="needs a request"):
            get_tasks(app).task(name="x").after_response  # noqa: B018


async def test_after_schedulers_offer_the_same_api(make_app: Any) -> None:
    app = make_app()
    ran: list[str] = []

    async def record(tag: str) -> None:
        ran.append(tag)

    handles: list[Any] = []
    at_return: dict[str, Any] = {}

    @app.get("/")
    async def endpoint(tasks: Tasks) -> None:
        after = tasks.after_response
        assert after is tasks.after_response
        handles.append(after.task(name="a").schedule(record, "a"))
        handles.append(tasks.task(name="b").after_response.schedule(record, "b"))
        handles.append(tasks.after_route.task(shield=True).schedule(record, "c"))
        await anyio.sleep(0)
        # all three are queued for later, none started now
        at_return["deferred"] = tasks.stats().deferred
        at_return["ran"] = list(ran)

    async with serve(app) as client:
        await client.get("/")
        await wait_for_tasks(app)
    assert at_return == {"deferred": 3, "ran": []}
    assert sorted(ran) == ["a", "b", "c"]
    assert [task.name for task in handles[:2]] == ["a", "b"]
    assert handles[2].shielded and not handles[0].shielded


@pytest.fixture
def app_with_plain_fastapi() -> FastAPI:
    return FastAPI()


async def test_requests_without_tasks_are_untouched(make_app: Any) -> None:
    app = make_app()

    @app.get("/plain")
    async def plain() -> dict[str, int]:
        return {"ok": 1}

    @app.get("/missing")
    async def missing() -> None:
        raise RequestValidationError([])

    async with serve(app) as client:
        assert (await client.get("/plain")).json() == {"ok": 1}
        assert (await client.get("/missing")).status_code == 422
        assert get_tasks(app).stats().discarded == 0
