"""The app a real ``uvicorn`` process serves in the isolation (2) and shutdown (4) scenarios.

Environment:

* ``BENCH_VARIANT=lib`` (default): wired with ``add_tasks`` from whichever ``fastapi_tasks``
  the interpreter has (this repository's, or 0.1.0 in ``benchmarks/.venv-original``).
* ``BENCH_VARIANT=naive``: no library. A task group opened in the lifespan (cancelled at
  shutdown); sync work goes to anyio's *default* thread pool, the one FastAPI also uses for
  ``def`` endpoints (what ``run_in_threadpool`` and ``anyio.to_thread.run_sync`` do).
* ``BENCH_SIDE_EFFECTS``: a file each shielded task appends one line to (its finish time).

Both variants run exactly the same task functions and endpoints; only the spawner differs.
"""

import functools
import importlib.metadata
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any, Protocol

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from fastapi import Depends, FastAPI, Request

VARIANT = os.environ.get("BENCH_VARIANT", "lib")
SIDE_EFFECTS = os.environ.get("BENCH_SIDE_EFFECTS", "")


class Progress:
    """What the tasks did so far (read by ``/progress``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sync_outstanding = 0
        self.async_started = 0


PROGRESS = Progress()


def blocking_sleep(seconds: float) -> None:
    """The sync background job of the isolation scenario."""
    try:
        time.sleep(seconds)
    finally:
        with PROGRESS.lock:
            PROGRESS.sync_outstanding -= 1


async def sleeper() -> None:
    """An unshielded async task that would sleep for an hour."""
    PROGRESS.async_started += 1
    await anyio.sleep(3600)


async def shielded_job(seconds: float) -> None:
    """A shielded task: sleeps, then leaves a side effect that shows it ran to the end."""
    await anyio.sleep(seconds)
    with open(SIDE_EFFECTS, "a", encoding="utf-8") as file:
        file.write(f"{time.time():.6f}\n")


class Spawner(Protocol):
    def sync(self, func: Callable[..., Any], *args: Any) -> None: ...
    def async_(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None: ...
    def shielded(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None: ...


class LibSpawner:
    """Through the library's ``Tasks`` dependency."""

    def __init__(self, tasks: Any) -> None:
        self.tasks = tasks

    def sync(self, func: Callable[..., Any], *args: Any) -> None:
        self.tasks.schedule(func, *args)

    def async_(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        self.tasks.schedule(func, *args)

    def shielded(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self.tasks.task(shield=True).schedule(func, *args)


class NaiveSpawner:
    """The hand-rolled way: ``start_soon`` on the lifespan's task group."""

    def __init__(self, tg: TaskGroup) -> None:
        self.tg = tg

    def sync(self, func: Callable[..., Any], *args: Any) -> None:
        self.tg.start_soon(functools.partial(anyio.to_thread.run_sync, func, *args))

    def async_(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        self.tg.start_soon(func, *args)

    def shielded(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        async def run_shielded() -> None:
            with anyio.CancelScope(shield=True):
                await func(*args)

        self.tg.start_soon(run_shielded)


@asynccontextmanager
async def naive_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    async with anyio.create_task_group() as tg:
        yield {"tg": tg}
        tg.cancel_scope.cancel()


def build() -> tuple[FastAPI, Callable[..., Awaitable[Spawner]], str]:
    """The app, its spawner dependency, and the version of the library it uses."""
    if VARIANT == "naive":

        async def naive_spawner(request: Request) -> Spawner:
            return NaiveSpawner(request.state.tg)

        return FastAPI(lifespan=naive_lifespan), naive_spawner, "none"

    from fastapi_tasks import Tasks, add_tasks

    async def lib_spawner(tasks: Tasks) -> Spawner:
        return LibSpawner(tasks)

    app = FastAPI()
    add_tasks(app)  # thread_limit defaults to 40 (0.1.0 has no limit of its own)
    return app, lib_spawner, importlib.metadata.version("fastapi-tasks")


app, get_spawner, LIB_VERSION = build()
SpawnerDep = Annotated[Spawner, Depends(get_spawner)]


@app.get("/ping")
def ping() -> None:
    """A plain ``def`` endpoint: FastAPI runs it on anyio's default thread pool."""
    return None


@app.get("/info")
async def info() -> dict[str, str]:
    return {"variant": VARIANT, "fastapi_tasks": LIB_VERSION, "pid": str(os.getpid())}


@app.get("/progress")
async def progress() -> dict[str, int]:
    return {
        "sync_outstanding": PROGRESS.sync_outstanding,
        "async_started": PROGRESS.async_started,
    }


@app.post("/sync-load")
async def sync_load(spawner: SpawnerDep, n: int, seconds: float) -> None:
    with PROGRESS.lock:
        PROGRESS.sync_outstanding += n
    for _ in range(n):
        spawner.sync(blocking_sleep, seconds)


@app.post("/async-sleepers")
async def async_sleepers(spawner: SpawnerDep, n: int) -> None:
    for _ in range(n):
        spawner.async_(sleeper)


@app.post("/shielded")
async def shielded(spawner: SpawnerDep, n: int, seconds: float) -> None:
    for _ in range(n):
        spawner.shielded(shielded_job, seconds)
