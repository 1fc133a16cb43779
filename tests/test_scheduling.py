"""schedule(): what it accepts, what it returns, and where it can be called from."""

import functools
import threading
from typing import Annotated, Any

import anyio
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from fastapi_tasks import Task, Tasks, TaskScheduler, TaskState, get_tasks

from .conftest import serve

pytestmark = pytest.mark.anyio


async def test_schedule_starts_now_with_args_and_kwargs(make_app: Any) -> None:
    app = make_app()
    seen: list[tuple[Any, ...]] = []
    release = anyio.Event()

    async def work(a: int, b: str, *, c: float = 0.0) -> None:
        seen.append((a, b, c))
        await release.wait()

    @app.post("/")
    async def endpoint(tasks: Tasks) -> dict[str, str]:
        task = tasks.schedule(work, 1, "two", c=3.0)
        await task.started.wait()  # it runs concurrently with the endpoint
        assert task.state is TaskState.RUNNING
        return {"state": task.state.value}

    async with serve(app) as client:
        assert (await client.post("/")).json() == {"state": "running"}
        release.set()
    assert seen == [(1, "two", 3.0)]


async def test_task_handle_fields(make_app: Any) -> None:
    app = make_app()

    async def work(x: int, *, y: int) -> int:
        return x + y

    async with serve(app):
        task = get_tasks(app).schedule(work, 1, y=2)
        assert isinstance(task, Task)
        assert task.func is work
        assert task.args == (1,)
        assert task.kwargs == {"y": 2}
        assert task.config.name is None
        assert task.name.endswith("work")
        await task.wait()
        assert task.done()
        assert task.state is TaskState.SUCCEEDED
        assert task.error is None
        assert task.started.is_set()
        assert await task() == 3  # runs the function once more


async def test_several_tasks_run_concurrently(make_app: Any) -> None:
    app = make_app()
    arrived = 0
    all_arrived = anyio.Event()

    async def barrier() -> None:
        nonlocal arrived
        arrived += 1
        if arrived == 5:
            all_arrived.set()
        await all_arrived.wait()  # deadlocks unless all five run at the same time

    async with serve(app):
        tasks = [get_tasks(app).schedule(barrier) for _ in range(5)]
        with anyio.fail_after(5):
            for task in tasks:
                await task.wait()
    assert all(task.state is TaskState.SUCCEEDED for task in tasks)


async def test_reused_workers_never_leave_a_queued_task_behind(make_app: Any) -> None:
    """Parked workers are woken directly by schedule(); a batch bigger than the parked pool,
    and tasks queued by a task that then blocks, must still all run at the same time."""
    app = make_app()

    async def gathering(size: int) -> None:
        arrived = 0
        everyone = anyio.Event()

        async def barrier() -> None:
            nonlocal arrived
            arrived += 1
            if arrived == size:
                everyone.set()
            await everyone.wait()  # deadlocks unless all of the batch run at the same time

        async def parent() -> None:
            # Queued from inside a worker, which then blocks until its children have all met.
            children = [get_tasks(app).schedule(barrier) for _ in range(size - 1)]
            await barrier()
            for child in children:
                await child.wait()

        with anyio.fail_after(5):
            await get_tasks(app).schedule(parent).wait()

    async with serve(app):
        for size in (3, 6, 2, 9, 1, 9):  # reuse only, reuse plus new workers, and back
            await gathering(size)
        stats = get_tasks(app).stats()
    assert stats.succeeded == 3 + 6 + 2 + 9 + 1 + 9  # per round: the parent and size - 1 children
    assert stats.failed == stats.cancelled == 0


class AsyncCallable:
    def __init__(self) -> None:
        self.calls: list[int] = []

    async def __call__(self, value: int) -> None:
        self.calls.append(value)


class SyncCallable:
    def __init__(self) -> None:
        self.threads: list[str] = []

    def __call__(self) -> None:
        self.threads.append(threading.current_thread().name)


async def test_async_detection_sees_through_partials_and_callable_objects(make_app: Any) -> None:
    app = make_app()
    obj = AsyncCallable()
    sync_obj = SyncCallable()
    loop_thread = threading.current_thread().name

    async def add(a: int, b: int) -> None:
        obj.calls.append(a + b)

    async with serve(app):
        scheduler = get_tasks(app)
        handles = [
            scheduler.schedule(obj, 1),
            scheduler.schedule(functools.partial(obj, 2)),
            scheduler.schedule(functools.partial(functools.partial(add, 1), 2)),
            scheduler.schedule(sync_obj),
        ]
        for handle in handles:
            await handle.wait()
    assert [handle.is_async for handle in handles] == [True, True, True, False]
    assert sorted(obj.calls) == [1, 2, 3]
    assert sync_obj.threads and sync_obj.threads[0] != loop_thread


async def test_bad_callables_are_rejected_at_the_call(make_app: Any) -> None:
    app = make_app()

    async def coro_fn() -> None:
        pass

    def gen_fn() -> Any:
        yield 1

    async def agen_fn() -> Any:
        yield 1

    async with serve(app):
        scheduler = get_tasks(app)
        with pytest.raises(TypeError, match="callable"):
            scheduler.schedule(42)  # type: ignore[call-overload]
        coro = coro_fn()
        with pytest.raises(TypeError, match=r"tasks.schedule\(fn, arg\)"):
            scheduler.schedule(coro)  # type: ignore[call-overload]
        coro.close()
        with pytest.raises(TypeError, match="generator"):
            scheduler.schedule(gen_fn)
        with pytest.raises(TypeError, match="generator"):
            scheduler.schedule(agen_fn)
        assert scheduler.stats().scheduled == 0


async def test_sub_dependency_and_endpoint_share_one_scheduler(make_app: Any) -> None:
    app = make_app()
    ran: list[str] = []

    async def log(what: str) -> None:
        ran.append(what)

    async def current_user(tasks: Tasks) -> TaskScheduler:
        tasks.after_route.schedule(log, "audit from dependency")
        return tasks

    def sync_dependency(tasks: Tasks) -> TaskScheduler:
        tasks.after_route.schedule(log, "audit from sync dependency")
        return tasks

    @app.get("/")
    async def endpoint(
        tasks: Tasks,
        seen_by_dep: Annotated[TaskScheduler, Depends(current_user)],
        seen_by_sync_dep: Annotated[TaskScheduler, Depends(sync_dependency)],
    ) -> bool:
        tasks.after_route.schedule(log, "from endpoint")
        return tasks is seen_by_dep is seen_by_sync_dep

    async with serve(app) as client:
        assert (await client.get("/")).json() is True
        from fastapi_tasks.testing import wait_for_tasks

        await wait_for_tasks(app)
    assert sorted(ran) == ["audit from dependency", "audit from sync dependency", "from endpoint"]


async def test_each_request_gets_its_own_scheduler(make_app: Any) -> None:
    app = make_app()
    seen: list[TaskScheduler] = []  # kept alive, so two schedulers can never share an id

    @app.get("/")
    async def endpoint(tasks: Tasks) -> None:
        seen.append(tasks)

    async with serve(app) as client:
        await client.get("/")
        await client.get("/")
    assert len(seen) == 2
    assert seen[0] is not seen[1]


def test_sync_endpoints_and_dependencies_schedule_from_worker_threads() -> None:
    app = FastAPI()
    from fastapi_tasks import add_tasks

    add_tasks(app)
    ran: list[str] = []

    async def async_work(tag: str) -> None:
        ran.append(tag)

    def sync_work(tag: str) -> None:
        ran.append(tag)

    @app.get("/")
    def endpoint(tasks: Tasks) -> dict[str, Any]:
        assert threading.current_thread() is not threading.main_thread()
        now = tasks.schedule(async_work, "now")
        thread_task = tasks.schedule(sync_work, "sync now")
        tasks.after_route.schedule(async_work, "after route")
        tasks.after_response.schedule(sync_work, "after response")
        return {"now": isinstance(now, Task), "sync": isinstance(thread_task, Task)}

    with TestClient(app) as client:
        assert client.get("/").json() == {"now": True, "sync": True}
        from fastapi_tasks.testing import wait_for_tasks_sync

        wait_for_tasks_sync(client)
        assert sorted(ran) == ["after response", "after route", "now", "sync now"]


async def test_scheduling_from_a_plain_thread_uses_the_loop_token(make_app: Any) -> None:
    app = make_app()
    ran = anyio.Event()
    result: list[Any] = []

    async def mark() -> None:
        ran.set()

    async with serve(app):
        scheduler = get_tasks(app)

        def from_foreign_thread() -> None:
            result.append(scheduler.schedule(mark))

        thread = threading.Thread(target=from_foreign_thread)
        await anyio.to_thread.run_sync(lambda: (thread.start(), thread.join()))
        with anyio.fail_after(5):
            await ran.wait()
    assert isinstance(result[0], Task)


async def test_repr_names_the_task_and_never_its_arguments(make_app: Any) -> None:
    app = make_app()

    async def charge(card_number: str) -> None:
        pass

    async with serve(app):
        task = get_tasks(app).task(name="charge-card").schedule(charge, "4111-1111-1111-1111")
        await task.wait()
    text = repr(task)
    assert "charge-card" in text
    assert "charge" in text
    assert "4111" not in text


def test_works_on_a_bare_asyncio_loop_like_uvicorns() -> None:
    """uvicorn runs the app on a plain asyncio loop, where (with sniffio installed) anyio cannot
    detect the library from inside a bare loop callback. Many blocking tasks force the runtime
    to start new workers from its own callbacks."""
    import asyncio

    from asgi_lifespan import LifespanManager
    from fastapi import FastAPI

    from fastapi_tasks import add_tasks

    app = FastAPI()
    add_tasks(app)
    finished: list[int] = []

    async def blocking(i: int) -> None:
        await asyncio.sleep(0.01)
        finished.append(i)

    async def main() -> None:
        async with LifespanManager(app):
            handles = [get_tasks(app).schedule(blocking, i) for i in range(50)]
            await asyncio.wait_for(asyncio.gather(*(h.wait() for h in handles)), 10)

    asyncio.run(main())
    assert sorted(finished) == list(range(50))
