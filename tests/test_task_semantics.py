"""Every task behaves like a real asyncio/trio task: its own context copy, freed memory, a fair
loop, the right loop, honest pending counts, a bounded and truthful shutdown, start order,
a runtime nothing can break, and mistakes reported at the call."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from fastapi_tasks import (
    FastAPITasksQueueFullError,
    Task,
    TaskConfig,
    Tasks,
    TaskState,
    add_tasks,
    get_tasks,
)
from fastapi_tasks.testing import wait_for_tasks

from .conftest import lifespan_in_background, serve

pytestmark = pytest.mark.anyio

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
leaked: contextvars.ContextVar[str] = contextvars.ContextVar("leaked", default="clean")


# ---------------------------------------------------------------------------- 1. context
def context_app() -> tuple[FastAPI, list[tuple[str, str, str]]]:
    """An app whose middleware sets a request id; every task records the id it sees."""
    app = FastAPI()
    add_tasks(app, thread_limit=8)
    seen: list[tuple[str, str, str]] = []

    @app.middleware("http")
    async def bind_request_id(request: Request, call_next: Any) -> Any:
        token = request_id.set(request.query_params["rid"])
        try:
            return await call_next(request)
        finally:
            request_id.reset(token)

    async def async_task(label: str) -> None:
        seen.append((label, request_id.get(), leaked.get()))
        leaked.set(f"set by {label}")
        await anyio.sleep(0)
        get_tasks(app).schedule(follow_up, label)

    async def follow_up(label: str) -> None:
        seen.append((f"{label}/follow-up", request_id.get(), leaked.get()))

    def sync_task(label: str) -> None:
        seen.append((label, request_id.get(), leaked.get()))
        leaked.set(f"set by {label}")

    @app.get("/")
    async def endpoint(tasks: Tasks) -> str:
        tasks.schedule(async_task, "now-async")
        tasks.schedule(sync_task, "now-sync")
        tasks.after_route.schedule(async_task, "route-async")
        tasks.after_route.schedule(sync_task, "route-sync")
        tasks.after_response.schedule(async_task, "response-async")
        tasks.after_response.schedule(sync_task, "response-sync")
        await anyio.sleep(0)
        return leaked.get()  # nothing a task sets reaches the endpoint

    @app.get("/sync")
    def sync_endpoint(tasks: Tasks) -> str:
        tasks.schedule(async_task, "def-endpoint-async")
        tasks.after_response.schedule(sync_task, "def-endpoint-sync")
        return leaked.get()

    return app, seen


async def test_one_hundred_concurrent_requests_each_see_their_own_id_in_every_task() -> None:
    app, seen = context_app()
    async with serve(app) as client:
        answers: list[str] = []

        async def call(rid: int) -> None:
            path = "/" if rid % 2 else "/sync"
            answers.append((await client.get(path, params={"rid": f"r{rid}"})).json())

        async with anyio.create_task_group() as tg:
            for rid in range(100):
                tg.start_soon(call, rid)
        for _ in range(3):  # follow-ups are scheduled by tasks
            await wait_for_tasks(app)
    assert answers == ["clean"] * 100
    # 50 requests x 6 tasks + 6 follow-ups... per endpoint kind
    assert len(seen) == 50 * (6 + 3) + 50 * (2 + 1)
    by_request: dict[str, list[str]] = {}
    for label, rid, leak in seen:
        parent, _, follow = label.partition("/")
        # a follow-up sees what its scheduling task had set; nothing else sees any of it
        expected = f"set by {parent}" if follow else "clean"
        assert leak == expected, f"{label} in {rid} saw {leak!r}"
        by_request.setdefault(rid, []).append(label)
    assert sorted(by_request) == sorted(f"r{rid}" for rid in range(100))
    assert sorted(by_request["r1"]) == sorted(
        [
            "now-async",
            "now-sync",
            "route-async",
            "route-sync",
            "response-async",
            "response-sync",
            "now-async/follow-up",
            "route-async/follow-up",
            "response-async/follow-up",
        ]
    )
    assert sorted(by_request["r2"]) == [
        "def-endpoint-async",
        "def-endpoint-async/follow-up",
        "def-endpoint-sync",
    ]


async def test_a_task_sees_the_context_of_schedule_not_of_its_release(make_app: Any) -> None:
    app = make_app()
    seen: list[str] = []

    async def record() -> None:
        seen.append(request_id.get())

    async def set_in_dependency() -> AsyncIterator[None]:
        request_id.set("from the dependency")
        yield

    @app.get("/", dependencies=[])
    async def endpoint(tasks: Tasks) -> None:
        request_id.set("at schedule()")
        tasks.after_response.schedule(record)
        request_id.set("changed later")

    async with serve(app) as client:
        await client.get("/")
        await wait_for_tasks(app)
        token = request_id.set("startup-like code")
        try:
            task = get_tasks(app).schedule(record)
        finally:
            request_id.reset(token)
        await task.wait()
    assert seen == ["at schedule()", "startup-like code"]


async def test_on_error_runs_in_the_failed_tasks_context(make_app: Any) -> None:
    app = make_app()
    seen: list[tuple[str, str]] = []

    async def async_handler(task: Task[..., Any], error: Exception) -> None:
        seen.append(("async handler", request_id.get()))

    def sync_handler(task: Task[..., Any], error: Exception) -> None:
        seen.append(("sync handler", request_id.get()))

    async def fail_async() -> None:
        raise ValueError("boom")

    def fail_sync() -> None:
        raise ValueError("boom")

    async with serve(app):
        request_id.set("req-7")
        scheduler = get_tasks(app)
        tasks = [
            scheduler.task(on_error=async_handler).schedule(fail_async),
            scheduler.task(on_error=sync_handler).schedule(fail_async),
            scheduler.task(on_error=async_handler).schedule(fail_sync),
            scheduler.task(on_error=sync_handler).schedule(fail_sync),
        ]
        request_id.set("-")
        for task in tasks:
            await task.wait()
    assert sorted(seen) == sorted([("async handler", "req-7"), ("sync handler", "req-7")] * 2)
    assert all(task.state is TaskState.FAILED for task in tasks)


# ---------------------------------------------------------------------------- 2. memory
class Blob:
    def __init__(self) -> None:
        self.payload = bytearray(1024)


async def test_finished_tasks_and_their_arguments_are_freed(make_app: Any) -> None:
    app = make_app()
    refs: list[weakref.ref[Any]] = []

    async def ok(blob: Blob) -> None:
        await anyio.sleep(0)

    async def bad(blob: Blob) -> None:
        raise RuntimeError("fails, with its traceback")

    def sync_ok(blob: Blob) -> None:
        pass

    def sync_bad(blob: Blob) -> None:
        raise RuntimeError("fails in a thread")

    async def handler(task: Task[..., Any], error: Exception) -> None:
        pass

    logging.getLogger("fastapi_tasks").disabled = True  # no log record keeps a traceback
    try:
        async with serve(app):
            scheduler = get_tasks(app).task(on_error=handler)
            for func in (ok, bad, sync_ok, sync_bad) * 25:
                blob = Blob()
                refs.append(weakref.ref(blob))
                task = scheduler.schedule(func, blob)
                refs.append(weakref.ref(task))
                del blob, task
            await wait_for_tasks(app)
            # anyio's worker thread drops its last reference to a sync task just after
            # reporting the result: wait for that state, not for a fixed number of turns
            with anyio.fail_after(5):
                while True:
                    gc.collect()
                    if all(ref() is None for ref in refs):
                        break
                    await anyio.sleep(0.001)
            assert get_tasks(app).stats().succeeded == 50
    finally:
        logging.getLogger("fastapi_tasks").disabled = False


# ---------------------------------------------------------------------------- 3. fairness
async def test_a_chain_of_follow_ups_never_holds_the_loop(
    make_app: Any, anyio_backend_name: str
) -> None:
    app = make_app()
    steps = 2000
    ticks = 0
    done = anyio.Event()
    ticks_at_step: list[int] = []

    async def step(remaining: int) -> None:  # never awaits
        ticks_at_step.append(ticks)
        if remaining:
            get_tasks(app).schedule(step, remaining - 1)
        else:
            done.set()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.sleep(0)

    async with serve(app), anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        get_tasks(app).schedule(step, steps)
        await done.wait()
    # the ticker had a turn between every two steps of the chain (trio runs each batch of
    # ready tasks in random order, so there: between every step and the one after the next)
    assert len(ticks_at_step) == steps + 1
    gap = 1 if anyio_backend_name == "asyncio" else 2
    assert all(b > a for a, b in zip(ticks_at_step, ticks_at_step[gap:], strict=False))


async def test_a_task_that_reschedules_itself_does_not_starve_requests(make_app: Any) -> None:
    app = make_app()
    spins = 0

    async def spin() -> None:  # never awaits, reschedules itself forever
        nonlocal spins
        spins += 1
        get_tasks(app).schedule(spin)

    @app.get("/ping")
    async def ping() -> int:
        return spins

    async with serve(app) as client:
        get_tasks(app).schedule(spin)
        answers = []
        for _ in range(20):
            answers.append((await client.get("/ping")).json())
            await anyio.sleep(0)  # a server yields here for its socket I/O
    assert answers == sorted(answers) and answers[-1] > answers[0]
    stats = get_tasks(app).stats()
    assert stats.state == "stopped" and stats.pending + stats.running == 0


# ---------------------------------------------------------------------------- 4. loops
def test_lifespan_on_one_loop_and_requests_on_another_loop_run_their_tasks() -> None:
    """pytest-asyncio's common layout: a session-scoped lifespan fixture on one loop, each test
    on a loop of its own, all in one thread."""
    app = FastAPI()
    add_tasks(app)
    ran: list[str] = []

    async def record(label: str) -> None:
        await anyio.sleep(0)
        ran.append(label)

    def record_sync(label: str) -> None:
        ran.append(label)

    @app.get("/")
    async def endpoint(tasks: Tasks) -> str:
        tasks.schedule(record, "now")
        tasks.after_response.schedule(record, "after-response")
        tasks.schedule(record_sync, "sync")
        return "ok"

    @app.get("/def")
    def def_endpoint(tasks: Tasks) -> str:
        tasks.schedule(record, "from a def endpoint")
        return "ok"

    async def start() -> LifespanManager:
        manager = LifespanManager(app)
        await manager.__aenter__()
        return manager

    session_loop = asyncio.new_event_loop()
    manager = session_loop.run_until_complete(start())

    async def a_test() -> None:
        transport = httpx.ASGITransport(manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/")).json() == "ok"
            assert (await client.get("/def")).json() == "ok"
        await wait_for_tasks(app)

    try:
        for _ in range(2):
            test_loop = asyncio.new_event_loop()
            try:
                test_loop.run_until_complete(a_test())
            finally:
                test_loop.close()
    finally:
        session_loop.run_until_complete(manager.__aexit__(None, None, None))
        session_loop.close()
    assert sorted(ran) == sorted(["now", "after-response", "sync", "from a def endpoint"] * 2)
    stats = get_tasks(app).stats()
    assert (stats.succeeded, stats.cancelled) == (8, 0)


# ---------------------------------------------------------------------------- 5. pending
async def test_an_idle_server_accepts_any_burst_of_async_tasks(make_app: Any) -> None:
    app = make_app(max_pending=1)

    async def noop() -> None:
        pass

    async with serve(app):
        tasks = [get_tasks(app).schedule(noop) for _ in range(20)]
        assert get_tasks(app).stats().rejected == 0
        await wait_for_tasks(app)
    assert all(task.state is TaskState.SUCCEEDED for task in tasks)


async def test_max_pending_bounds_sync_tasks_waiting_for_a_thread(make_app: Any) -> None:
    app = make_app(thread_limit=2, max_pending=3)
    gate = threading.Event()

    def blocked() -> None:
        gate.wait(10)

    async with serve(app):
        scheduler = get_tasks(app)
        try:
            accepted = [scheduler.schedule(blocked) for _ in range(2 + 3)]  # threads + backlog
            stats = scheduler.stats()
            assert (stats.pending, stats.waiting, stats.rejected) == (5, 3, 0)
            with pytest.raises(FastAPITasksQueueFullError, match="3 sync tasks are already"):
                scheduler.schedule(blocked)
        finally:
            gate.set()
        await wait_for_tasks(app)
    assert [task.state for task in accepted] == [TaskState.SUCCEEDED] * 5


# ---------------------------------------------------------------------------- 6. shutdown
async def test_the_lifespan_ends_at_the_deadline_and_late_finishers_are_logged(
    make_app: Any, task_logs: pytest.LogCaptureFixture
) -> None:
    app = make_app(shutdown_timeout=0.2)
    release = threading.Event()
    threads_in = threading.Semaphore(0)
    stubborn_cancelled = anyio.Event()
    stubborn_may_end = anyio.Event()

    def blocking() -> str:
        threads_in.release()
        release.wait(10)
        return "done"

    async def awaits_a_thread() -> None:
        await run_in_threadpool(blocking)

    async def swallows_cancellation() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            stubborn_cancelled.set()
            with anyio.CancelScope(shield=True):
                await stubborn_may_end.wait()

    try:
        async with lifespan_in_background(app) as life:
            shielded = get_tasks(app).task(shield=True)
            in_thread = shielded.schedule(awaits_a_thread)
            sync = shielded.schedule(blocking)
            stubborn = shielded.schedule(swallows_cancellation)
            for _ in range(2):
                await anyio.to_thread.run_sync(threads_in.acquire, True, 5)
            await stubborn.started.wait()
            life.shutdown()
            with anyio.fail_after(5):
                await life.ended.wait()  # the lifespan ends although all three still run
        stats = get_tasks(app).stats()
        assert (stats.abandoned, stats.cancelled, stats.state) == (3, 3, "stopped")
        assert [task.state for task in (in_thread, sync, stubborn)] == [TaskState.CANCELLED] * 3
        assert task_logs.text.count("abandoning") == 3
        with anyio.fail_after(5):
            await stubborn_cancelled.wait()  # the deadline cancelled it; it goes on regardless
    finally:
        release.set()
        stubborn_may_end.set()
    late = "after the shutdown deadline gave up on it"
    with anyio.fail_after(5):
        while task_logs.text.count(late) < 2:  # the sync one and the stubborn one
            await anyio.sleep(0.01)
    assert "blocking completed" in task_logs.text
    assert "swallows_cancellation completed" in task_logs.text
    assert get_tasks(app).stats().succeeded == 0  # counted once, as abandoned


# ---------------------------------------------------------------------------- 7. order
async def test_tasks_start_in_the_order_they_were_scheduled(make_app: Any) -> None:
    app = make_app()
    order: list[str] = []

    async def record(label: str) -> None:
        order.append(label)

    @app.get("/")
    async def endpoint(tasks: Tasks) -> None:
        tasks.after_response.schedule(record, "a")
        tasks.after_response.task(shield=True).schedule(record, "b (shielded)")
        tasks.after_response.schedule(record, "c")
        tasks.schedule(record, "now-1")
        tasks.task(shield=True).schedule(record, "now-2 (shielded)")
        tasks.schedule(record, "now-3")

    async with serve(app) as client:
        await client.get("/")
        await wait_for_tasks(app)
    assert order == ["now-1", "now-2 (shielded)", "now-3", "a", "b (shielded)", "c"]


async def test_started_is_never_set_for_a_task_that_never_started(make_app: Any) -> None:
    app = make_app()
    handles: list[Task[..., Any]] = []

    async def noop() -> None:
        pass

    @app.get("/fails")
    async def fails(tasks: Tasks) -> None:
        task = tasks.after_response.schedule(noop)
        assert not task.started.is_set()  # the event is made before the task ends
        handles.append(task)
        raise RuntimeError("endpoint failed")

    async with serve(app, raise_app_exceptions=False) as client:
        assert (await client.get("/fails")).status_code == 500
        discarded = handles[0]
        await discarded.wait()
        unstarted = get_tasks(app).schedule(noop)
        assert not unstarted.started.is_set()
    # cancelled by the drain before its first step (the lifespan ended at once)
    await unstarted.wait()
    assert discarded.state is TaskState.CANCELLED and not discarded.started.is_set()
    assert discarded.started_at is None
    assert unstarted.state in (TaskState.CANCELLED, TaskState.SUCCEEDED)
    assert unstarted.started.is_set() == (unstarted.state is TaskState.SUCCEEDED)


# ---------------------------------------------------------------------------- 8. robustness
class Proxy:
    """Like a context-bound proxy: reading its name raises."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("__qualname__", "__module__", "__name__"):
            raise RuntimeError("no context bound")
        return object.__getattribute__(self, name)

    async def __call__(self) -> None:
        raise ValueError("the proxied call failed")


async def test_a_callable_whose_name_raises_cannot_break_the_runtime(
    make_app: Any, task_logs: pytest.LogCaptureFixture
) -> None:
    app = make_app()

    async def fine() -> None:
        pass

    async with serve(app):
        failing = get_tasks(app).schedule(Proxy())
        await failing.wait()
        assert failing.state is TaskState.FAILED
        assert get_tasks(app).stats().state == "running"
        later = get_tasks(app).schedule(fine)
        await later.wait()
        assert later.state is TaskState.SUCCEEDED
    assert "Proxy object" in task_logs.text


async def test_startup_code_can_await_the_tasks_it_schedules() -> None:
    results: list[str] = []

    async def warm_cache() -> None:
        await anyio.sleep(0)
        results.append("warm")

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = get_tasks(app).schedule(warm_cache)
        with anyio.fail_after(5):
            await task.wait()
        results.append(task.state.value)
        yield

    app = FastAPI(lifespan=lifespan)
    add_tasks(app)
    async with serve(app):
        pass
    assert results == ["warm", "succeeded"]


def _gen_handler(task: Task[..., Any], error: Exception) -> Iterator[None]:
    yield


async def _agen_handler(task: Task[..., Any], error: Exception) -> AsyncIterator[None]:
    yield


def _one_argument(task: Task[..., Any]) -> None:
    pass


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (_gen_handler, "not a generator function"),
        (_agen_handler, "not a generator function"),
        (_one_argument, "two positional arguments"),
        (lambda: None, "two positional arguments"),
        ("handler", "must be a callable"),
    ],
)
def test_handlers_that_could_never_run_are_refused(handler: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        TaskConfig(on_error=handler)
    app = FastAPI()
    add_tasks(app)
    with pytest.raises(TypeError, match=message):
        get_tasks(app).task(on_error=handler)


async def test_an_awaitable_returned_by_a_plain_handler_is_awaited(make_app: Any) -> None:
    app = make_app()
    handled: list[str] = []

    async def report(error: Exception) -> None:
        handled.append(str(error))

    async def fail() -> None:
        raise ValueError("boom")

    async with serve(app):
        task = get_tasks(app).task(on_error=lambda task, error: report(error)).schedule(fail)
        await task.wait()
    assert handled == ["boom"]


# ---------------------------------------------------------------------------- 9. mistakes
async def add(a: int, b: int, *, scale: int = 1) -> int:
    return (a + b) * scale


def sync_add(a: int, b: int = 0) -> int:
    return a + b


@pytest.mark.parametrize(
    ("func", "args", "kwargs"),
    [
        (add, (1,), {}),
        (add, (1, 2, 3), {}),
        (add, (1, 2), {"factor": 2}),
        (add, (1,), {"a": 2}),
        (sync_add, (), {}),
        (sync_add, (1,), {"c": 1}),
        (Blob, (1,), {}),
    ],
)
async def test_arguments_that_do_not_fit_raise_at_schedule(
    make_app: Any, func: Any, args: Any, kwargs: Any
) -> None:
    app = make_app()
    async with serve(app):
        with pytest.raises(TypeError, match="do not fit"):
            get_tasks(app).schedule(func, *args, **kwargs)
        assert get_tasks(app).stats().scheduled == 0


async def test_arguments_that_fit_are_accepted(make_app: Any) -> None:
    import functools

    app = make_app()
    async with serve(app):
        scheduler = get_tasks(app)
        accepted = [
            scheduler.schedule(add, 1, 2),
            scheduler.schedule(add, 1, b=2, scale=3),
            scheduler.schedule(sync_add, 1),
            scheduler.schedule(sync_add, a=1, b=2),
            scheduler.schedule(functools.partial(add, 1), 2),
            scheduler.schedule(print, "any", "builtin", sep=""),
        ]
        await wait_for_tasks(app)
    assert [task.state for task in accepted] == [TaskState.SUCCEEDED] * 6


async def test_a_coroutine_returned_by_a_plain_function_is_reported(
    make_app: Any, task_logs: pytest.LogCaptureFixture
) -> None:
    app = make_app()

    async def work() -> None:
        pass

    async with serve(app):
        task = get_tasks(app).schedule(lambda: work())
        await task.wait()
    assert task.state is TaskState.FAILED
    assert isinstance(task.error, TypeError)
    assert "returned an awaitable; declare it 'async def'" in str(task.error)
