"""In-process scenarios: scheduling overhead (1), sync throughput (3), in-process drain (4) and
memory (5).

``run.py`` runs this file in a fresh interpreter once per implementation: with its own Python
for this repository's library, and with ``benchmarks/.venv-original``'s Python for
``fastapi-tasks==0.1.0``. Each run measures its baselines too, interleaved round by round with
the library, so every ratio compares figures taken in the same process minutes apart at most.

    python benchmarks/inprocess.py --out results.json [--quick] [--rounds N] [--only NAMES]
"""

import argparse
import asyncio
import functools
import gc
import itertools
import json
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx
from asgi_lifespan import LifespanManager
from fastapi import BackgroundTasks, Depends, FastAPI
from harness import Measurement, RawASGI, Series, interleave, interleave_sliced, wait_until
from impls import IMPL, Tasks

SCENARIOS = ("scheduling", "sync_throughput", "shutdown", "memory")


@dataclass(frozen=True)
class Sizes:
    rounds: int
    slices: int
    requests_httpx: int
    requests_raw: int
    schedule_calls: int
    sync_tasks: int
    drain_async: int
    drain_sync: int
    memory_tasks: int
    chain_steps: int

    @classmethod
    def make(cls, *, quick: bool, rounds: int | None) -> "Sizes":
        if quick:
            return cls(rounds or 2, 2, 200, 500, 5_000, 2_000, 5_000, 500, 5_000, 10_000)
        return cls(rounds or 5, 8, 1_600, 4_000, 20_000, 2_000, 10_000, 1_000, 10_000, 100_000)


def log(message: str) -> None:
    print(f"  [{IMPL.name}] {message}", file=sys.stderr, flush=True)


def lifespan_state(manager: LifespanManager) -> dict[str, Any]:
    """The lifespan state the app yielded (asgi-lifespan keeps it in a private attribute)."""
    state: dict[str, Any] = manager._state
    return state


# ------------------------------------------------------------------------ task bodies
class Count:
    """A counter bumped by the trivial async tasks (all of them run on the loop thread)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


DONE = Count()


async def noop() -> None:
    """The trivial async task: every variant (ours, BackgroundTasks, raw) runs this one."""
    DONE.n += 1


class Progress:
    """Counters of long-running tasks: how many started, how many finished."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.sync_started: list[None] = []  # list.append is atomic: bumped from threads


async def waiter(gate: anyio.Event, progress: Progress) -> None:
    progress.started += 1
    await gate.wait()
    progress.finished += 1


async def sleeper(progress: Progress) -> None:
    progress.started += 1
    await anyio.sleep(3600)


def cooperative_sync(progress: Progress) -> None:
    """A sync task that polls for cancellation, as a well-behaved long sync task should."""
    progress.sync_started.append(None)
    deadline = time.monotonic() + 60  # bounded even if cancellation never comes
    while time.monotonic() < deadline:
        anyio.from_thread.check_cancelled()
        time.sleep(0.002)


class SyncBatch:
    """``target`` trivial sync tasks; the last one to run sets ``done`` (one loop hop in all)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.counter = itertools.count(1)  # next() is atomic under the GIL
        self.done = anyio.Event()

    def work(self) -> None:
        if next(self.counter) == self.target:
            anyio.from_thread.run_sync(self.done.set)


# ------------------------------------------------------------------------ apps
# Each variant gets an app of its own with a single route, so routing costs the same for all.
async def bare() -> None:
    return None


async def bg10(background_tasks: BackgroundTasks) -> None:
    for _ in range(10):
        background_tasks.add_task(noop)


async def inject0(tasks: Tasks) -> None:
    return None


class Ceiling:
    """The cheapest scheduler that still gives every task a real asyncio task: a dependency
    returns it, and ``schedule`` is ``loop.create_task`` plus the strong reference asyncio's
    documentation asks fire-and-forget code to keep. No accounting, shutdown, errors or sync
    tasks: what any library keeping one native task per task must pay at least."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: set[asyncio.Task[None]] = set()

    def schedule(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = asyncio.get_running_loop().create_task(func())
        self.held.add(task)
        task.add_done_callback(self.held.discard)


CEILING = Ceiling()


async def ceiling_scheduler() -> Ceiling:
    return CEILING


async def ceiling0(tasks: Annotated[Ceiling, Depends(ceiling_scheduler)]) -> None:
    return None


async def ceiling10(tasks: Annotated[Ceiling, Depends(ceiling_scheduler)]) -> None:
    for _ in range(10):
        tasks.schedule(noop)


async def tasks10(tasks: Tasks) -> None:
    for _ in range(10):
        tasks.schedule(noop)


def make_app(endpoint: Callable[..., Awaitable[None]] | None, *, lib: bool) -> FastAPI:
    """An app serving ``endpoint`` at ``/``; with ``lib``, wired with ``add_tasks`` (thread
    limit 40). Without ``lib`` it is the no-library baseline."""
    app = FastAPI()
    if lib:
        IMPL.install(app, thread_limit=40)
    if endpoint is not None:
        app.get("/")(endpoint)
    return app


@asynccontextmanager
async def task_group_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """The hand-rolled way: a task group in the lifespan, cancelled at shutdown."""
    async with anyio.create_task_group() as tg:
        yield {"tg": tg}
        tg.cancel_scope.cancel()


# ------------------------------------------------------------------------ scenario 1
async def scheduling(sizes: Sizes) -> dict[str, Series]:
    """Requests/s of endpoints that schedule 10 trivial tasks, inject ``Tasks`` only, or do
    nothing; through httpx's ASGI transport and through raw ASGI calls."""
    out: dict[str, Series] = {}
    apps = {
        "bare": make_app(bare, lib=False),
        "bg10": make_app(bg10, lib=False),
        "ceiling10": make_app(ceiling10, lib=False),
        "lib_bare": make_app(bare, lib=True),
        "lib_inject0": make_app(inject0, lib=True),
        "lib_tasks10": make_app(tasks10, lib=True),
    }
    tasks_per_request = {"bg10": 10, "ceiling10": 10, "lib_tasks10": 10}
    async with AsyncExitStack() as lifespans:
        managers = {
            name: await lifespans.enter_async_context(LifespanManager(app))
            for name, app in apps.items()
        }
        for transport in ("httpx", "raw"):
            async with AsyncExitStack() as clients:
                variants: dict[str, Callable[[], Awaitable[float]]] = {}
                total = sizes.requests_httpx if transport == "httpx" else sizes.requests_raw
                n = total // sizes.slices  # requests per slice
                for name, manager in managers.items():
                    if transport == "httpx":
                        client = await clients.enter_async_context(_httpx(manager))
                        get = _httpx_get(client)
                    else:
                        get = RawASGI(apps[name], lifespan_state(manager)).get
                    variants[name] = _requests(get, n, tasks_per_request.get(name, 0))
                log(
                    f"scheduling via {transport}: {total} requests x {len(variants)} variants "
                    f"per round, taking turns in {sizes.slices} slices"
                )
                out[f"sched_{transport}"] = await interleave_sliced(
                    variants, units=n, rounds=sizes.rounds, slices=sizes.slices, log=log
                )
    return out


def _httpx(manager: LifespanManager) -> httpx.AsyncClient:
    # manager.app adds the lifespan state to each scope, as a server does.
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=manager.app), base_url="http://bench"
    )


def _httpx_get(client: httpx.AsyncClient) -> Callable[[str], Awaitable[int]]:
    async def get(path: str) -> int:
        return (await client.get(path)).status_code

    return get


def _requests(
    get: Callable[[str], Awaitable[int]], n: int, tasks_per_request: int
) -> Callable[[], Awaitable[float]]:
    """``n`` sequential requests and the tasks they scheduled; returns the seconds taken."""

    async def run() -> float:
        expected = DONE.n + n * tasks_per_request
        start = time.perf_counter()
        for _ in range(n):
            status = await get("/")
            if status != 200:
                raise RuntimeError(f"GET / answered {status}")
            await anyio.sleep(0)  # a server yields here while it does socket I/O
        await wait_until(lambda: DONE.n >= expected)  # background work is part of the cost
        return time.perf_counter() - start

    return run


async def schedule_cost(sizes: Sizes) -> dict[str, Series]:
    """Microseconds per ``schedule()`` call (and per task, until all ran) versus anyio's
    ``TaskGroup.start_soon`` and asyncio's ``create_task`` of the same coroutine function.

    Calls come in tight batches of 1,000 with one loop turn between batches (the tasks of a
    batch run there), so the number of live objects, and with it the garbage collector's
    work, stays that of a busy app rather than growing with the total count.
    """
    n, batch = sizes.schedule_calls, 1_000
    app = make_app(None, lib=True)
    async with LifespanManager(app) as manager, anyio.create_task_group() as tg:
        scheduler = IMPL.app_scheduler(app, lifespan_state(manager))
        loop = asyncio.get_running_loop()

        def lib_batch() -> None:
            schedule = scheduler.schedule
            for _ in range(batch):
                schedule(noop)

        def anyio_batch() -> None:
            start_soon = tg.start_soon
            for _ in range(batch):
                start_soon(noop)

        def asyncio_batch() -> None:
            keep: list[asyncio.Task[None]] = []  # the loop holds tasks weakly
            append, create_task = keep.append, loop.create_task
            for _ in range(batch):
                append(create_task(noop()))

        def timed(spawn_batch: Callable[[], None]) -> Callable[[], Awaitable[Measurement]]:
            async def run() -> Measurement:
                expected = DONE.n + n
                calls = 0.0
                start = time.perf_counter()
                for _ in range(n // batch):
                    before = time.perf_counter()
                    spawn_batch()
                    calls += time.perf_counter() - before
                    await anyio.sleep(0)
                await wait_until(lambda: DONE.n >= expected)
                total = time.perf_counter() - start
                return {"call_us": calls / n * 1e6, "total_us": total / n * 1e6}

            return run

        log(f"schedule() cost: {n} calls in batches of {batch} x 3 variants")
        series = await interleave(
            {
                "lib": timed(lib_batch),
                "anyio": timed(anyio_batch),
                "asyncio": timed(asyncio_batch),
            },
            rounds=sizes.rounds,
            log=log,
        )
    return {"schedule_cost": series}


async def loop_hold(sizes: Sizes) -> dict[str, Series]:
    """The longest time the event loop is held while a chain of ``chain_steps`` follow-ups
    runs, each step scheduling the next and never awaiting, versus the same chain made with
    asyncio's ``create_task``. A ticker task measures the longest gap between two of its turns.
    """
    n = sizes.chain_steps
    app = make_app(None, lib=True)
    async with LifespanManager(app) as manager:
        scheduler = IMPL.app_scheduler(app, lifespan_state(manager))
        loop = asyncio.get_running_loop()

        async def lib_step(remaining: int, done: asyncio.Event) -> None:
            if remaining:
                scheduler.schedule(lib_step, remaining - 1, done)
            else:
                done.set()

        keep: set[asyncio.Task[None]] = set()

        def spawn(coro: Coroutine[Any, Any, None]) -> None:
            # The reference a careful asyncio user keeps, so the baseline is what they write.
            task = loop.create_task(coro)
            keep.add(task)
            task.add_done_callback(keep.discard)

        async def raw_step(remaining: int, done: asyncio.Event) -> None:
            if remaining:
                spawn(raw_step(remaining - 1, done))
            else:
                done.set()

        def measured(step: Callable[[int, asyncio.Event], Awaitable[None]], lib: bool) -> Any:
            async def run() -> Measurement:
                done = asyncio.Event()
                worst = 0.0

                async def ticker() -> None:
                    nonlocal worst
                    last = time.perf_counter()
                    while not done.is_set():
                        await asyncio.sleep(0)
                        now = time.perf_counter()
                        worst = max(worst, now - last)
                        last = now

                ticking = loop.create_task(ticker())
                await asyncio.sleep(0)
                start = time.perf_counter()
                if lib:
                    scheduler.schedule(step, n, done)
                else:
                    spawn(step(n, done))
                await done.wait()
                total = time.perf_counter() - start
                await ticking
                return {"max_gap_ms": worst * 1e3, "chain_ms": total * 1e3}

            return run

        log(f"loop hold: a chain of {n} follow-ups x 2 variants")
        series = await interleave(
            {"lib": measured(lib_step, True), "asyncio": measured(raw_step, False)},
            rounds=sizes.rounds,
            log=log,
        )
    return {"loop_hold": series}


# ------------------------------------------------------------------------ scenario 3
async def sync_throughput(sizes: Sizes) -> dict[str, Series]:
    """Tasks/s of ``n`` trivial sync tasks through the library (40 threads) versus raw
    ``anyio.to_thread.run_sync`` with a ``CapacityLimiter(40)`` inside a task group."""
    n = sizes.sync_tasks
    app = make_app(None, lib=True)
    limiter = anyio.CapacityLimiter(40)
    async with LifespanManager(app) as manager:
        scheduler = IMPL.app_scheduler(app, lifespan_state(manager))

        async def lib() -> Measurement:
            batch = SyncBatch(n)
            start = time.perf_counter()
            for _ in range(n):
                scheduler.schedule(batch.work)
            await batch.done.wait()
            return n / (time.perf_counter() - start)

        async def raw() -> Measurement:
            batch = SyncBatch(n)

            async def run_one() -> None:
                await anyio.to_thread.run_sync(batch.work, limiter=limiter)

            async with anyio.create_task_group() as tg:
                start = time.perf_counter()
                for _ in range(n):
                    tg.start_soon(run_one)
                await batch.done.wait()
                elapsed = time.perf_counter() - start
            return n / elapsed

        log(f"sync throughput: {n} tasks x 2 variants")
        series = await interleave({"lib": lib, "raw": raw}, rounds=sizes.rounds, log=log)
    return {"sync_throughput": series}


# ------------------------------------------------------------------------ scenario 4 (drain)
async def drain(sizes: Sizes) -> dict[str, Series]:
    """Seconds to leave the lifespan (``LifespanManager`` exit) with ``drain_async`` sleeping
    unshielded async tasks and ``drain_sync`` cooperative sync tasks (40 running, the rest
    waiting for a thread), versus a hand-rolled task group doing the same."""
    n_async, n_sync = sizes.drain_async, sizes.drain_sync

    async def lib() -> Measurement:
        app = FastAPI()
        IMPL.install(app, thread_limit=40)
        async with LifespanManager(app, shutdown_timeout=120) as manager:
            scheduler = IMPL.app_scheduler(app, lifespan_state(manager))
            progress = Progress()
            for _ in range(n_async):
                scheduler.schedule(sleeper, progress)
            for _ in range(n_sync):
                scheduler.schedule(cooperative_sync, progress)
            await _wait_started(progress, n_async)
            start = time.perf_counter()
        return time.perf_counter() - start

    async def raw() -> Measurement:
        app = FastAPI(lifespan=task_group_lifespan)
        limiter = anyio.CapacityLimiter(40)
        async with LifespanManager(app, shutdown_timeout=120) as manager:
            tg = lifespan_state(manager)["tg"]
            progress = Progress()
            for _ in range(n_async):
                tg.start_soon(sleeper, progress)
            run_sync = functools.partial(
                anyio.to_thread.run_sync, cooperative_sync, progress, limiter=limiter
            )
            for _ in range(n_sync):
                tg.start_soon(run_sync)
            await _wait_started(progress, n_async)
            start = time.perf_counter()
        return time.perf_counter() - start

    log(f"in-process drain: {n_async} async + {n_sync} sync tasks x 2 variants")
    rounds = min(sizes.rounds, 3)
    return {"drain": await interleave({"lib": lib, "raw": raw}, rounds=rounds, log=log)}


async def _wait_started(progress: Progress, n_async: int) -> None:
    await wait_until(
        lambda: progress.started >= n_async and len(progress.sync_started) >= 40,
        timeout=60,
        poll=0.001,
    )


# ------------------------------------------------------------------------ scenario 5
async def memory(sizes: Sizes) -> dict[str, Series]:
    """Bytes per pending async task: ``n`` tasks all waiting on one ``anyio.Event``, through
    the library versus ``TaskGroup.start_soon`` of the same coroutine function.

    Each run starts from a fresh runtime (a new lifespan) or a fresh task group, opened before
    tracemalloc starts, so neither side reuses workers or tasks left by an earlier round. After
    a warm-up round, tracemalloc starts right before the tasks are scheduled (after a
    ``gc.collect()``); the figure is the growth of traced memory once every task is waiting,
    everything included (task objects, coroutines, frames, worker tasks, bookkeeping).
    """
    n = sizes.memory_tasks

    async def measure(spawn: Callable[[anyio.Event, Progress], object]) -> float:
        gate, progress = anyio.Event(), Progress()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(n):
                spawn(gate, progress)
            await wait_until(lambda: progress.started >= n)
            gc.collect()
            pending = tracemalloc.get_traced_memory()[0]
            gate.set()
            await wait_until(lambda: progress.finished >= n)
        finally:
            tracemalloc.stop()
        return (pending - before) / n

    async def lib() -> Measurement:
        app = make_app(None, lib=True)
        async with LifespanManager(app) as manager:
            scheduler = IMPL.app_scheduler(app, lifespan_state(manager))
            result = await measure(lambda gate, p: scheduler.schedule(waiter, gate, p))
        return result

    async def raw() -> Measurement:
        async with anyio.create_task_group() as tg:
            result = await measure(lambda gate, p: tg.start_soon(waiter, gate, p))
        return result

    log(f"memory: {n} pending tasks x 2 variants")
    series = await interleave({"lib": lib, "raw": raw}, rounds=min(sizes.rounds, 3), log=log)
    return {"memory": series}


# ------------------------------------------------------------------------ main
async def run_all(sizes: Sizes, only: set[str]) -> dict[str, Series]:
    series: dict[str, Series] = {}
    if "scheduling" in only:
        series.update(await scheduling(sizes))
        series.update(await schedule_cost(sizes))
        series.update(await loop_hold(sizes))
    if "sync_throughput" in only:
        series.update(await sync_throughput(sizes))
    if "shutdown" in only:
        series.update(await drain(sizes))
    if "memory" in only:
        series.update(await memory(sizes))
    return series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="where to write the JSON results")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    sizes = Sizes.make(quick=args.quick, rounds=args.rounds)
    started = time.perf_counter()
    # A plain asyncio loop, as uvicorn runs one (anyio.run would also set the async-library
    # context variable, hiding bugs that only show under a real server).
    series = asyncio.run(run_all(sizes, only))
    result = {
        "impl": IMPL.describe(),
        "python": sys.version.split()[0],
        "sizes": sizes.__dict__,
        "seconds": time.perf_counter() - started,
        "series": series,
    }
    with open(args.out, "w", encoding="utf-8") as file:
        json.dump(result, file, indent=1)


if __name__ == "__main__":
    main()
