"""The app the task-semantics server tests run under a real uvicorn.

FT_OUT: a directory for side effects and hand-shake files; FT_SHUTDOWN_TIMEOUT: seconds."""

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from fastapi_tasks import Tasks, add_tasks, get_tasks

OUT = Path(os.environ.get("FT_OUT", "."))
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

app = FastAPI()
add_tasks(app, shutdown_timeout=float(os.environ.get("FT_SHUTDOWN_TIMEOUT", "1")))
spins = 0


async def spin() -> None:
    """Reschedules itself forever and never awaits."""
    global spins
    spins += 1
    get_tasks(app).schedule(spin)


def wait_for_file(name: str) -> None:
    (OUT / f"{name}.started").touch()
    while not (OUT / name).exists():
        time.sleep(0.01)


async def in_threadpool(name: str) -> None:
    await run_in_threadpool(wait_for_file, name)


async def stubborn(name: str) -> None:
    """Swallows every cancellation (the deadline's, then the event loop's at exit) and
    finishes once its file appears."""
    (OUT / f"{name}.started").touch()
    while not (OUT / name).exists():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.01)


@app.get("/health")
async def health() -> dict[str, int | str]:
    return {**get_tasks(app).stats().to_dict(), "spins": spins}


@app.post("/spin")
async def start_spinning(tasks: Tasks) -> None:
    tasks.schedule(spin)


@app.post("/blocked")
async def blocked(tasks: Tasks) -> None:
    tasks.task(name="threadpool-waiter", shield=True).schedule(in_threadpool, "release-async")
    tasks.task(name="sync-waiter", shield=True).schedule(wait_for_file, "release-sync")
    tasks.task(name="stubborn", shield=True).schedule(stubborn, "release-stubborn")
