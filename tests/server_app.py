"""The app the real-server tests run under uvicorn. Configured through environment variables:

FT_OUT (directory where tasks leave side effects), FT_THREAD_LIMIT, FT_SHUTDOWN_TIMEOUT.
Bad values make add_tasks() raise at import, which is what one of the tests checks."""

import logging
import os
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
from fastapi import FastAPI

from fastapi_tasks import Task, Tasks, add_tasks, get_tasks

OUT = Path(os.environ.get("FT_OUT", "."))

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def _number(name: str, default: str) -> Any:
    raw = os.environ.get(name, default)
    if raw == "none":
        return None
    try:
        return int(raw)
    except ValueError:
        try:
            return float(raw)
        except ValueError:
            return raw  # passed on as is: add_tasks() must reject it


app = FastAPI()
add_tasks(
    app,
    thread_limit=_number("FT_THREAD_LIMIT", "40"),
    shutdown_timeout=_number("FT_SHUTDOWN_TIMEOUT", "none"),
)


def mark(name: str) -> None:
    (OUT / name).write_text("done")


async def async_job(name: str, seconds: float) -> None:
    await anyio.sleep(seconds)
    mark(name)


def sync_job(name: str, seconds: float) -> None:
    time.sleep(seconds)
    mark(name)


def cooperative_sync_job(name: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
        anyio.from_thread.check_cancelled()  # lets shutdown stop it between steps
    mark(name)


class CustomBaseError(BaseException):
    pass


async def raises(kind: str) -> None:
    if kind == "base":
        raise CustomBaseError("custom")
    if kind == "exit":
        raise SystemExit(2)
    raise ValueError("task failed")


async def broken_handler(task: Task[..., Any], error: Exception) -> None:
    raise RuntimeError("the handler failed too")


@app.post("/schedule")
async def schedule(
    tasks: Tasks,
    name: str,
    kind: str = "async",
    seconds: float = 0.0,
    shield: bool = False,
    wait: bool = True,
) -> dict[str, str]:
    job = {"async": async_job, "sync": sync_job, "sync-coop": cooperative_sync_job}[kind]
    task = tasks.task(name=name, shield=shield).schedule(job, name, seconds)
    if wait:
        await task.started.wait()
    return {"scheduled": name, "pid": str(os.getpid())}


@app.post("/fail")
async def fail(tasks: Tasks, kind: str) -> str:
    if kind == "handler":
        tasks.task(on_error=broken_handler).schedule(raises, "value")
    else:
        tasks.schedule(raises, kind)
    return "ok"


@app.post("/bad-input")
async def bad_input(tasks: Tasks) -> str:
    try:
        tasks.schedule("not callable")  # type: ignore[call-overload]
    except TypeError as exc:
        return f"TypeError: {exc}"
    return "accepted"  # pragma: no cover


@app.get("/ping")
def ping() -> str:  # a def endpoint: runs on FastAPI's thread pool, not the runtime's
    return "pong"


@app.get("/health")
async def health() -> dict[str, int | str]:
    return get_tasks(app).stats().to_dict()


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # the multi-worker test
    from fastapi_tasks.prometheus import instrument, metrics_app

    instrument(app)
    app.mount("/metrics", metrics_app())
