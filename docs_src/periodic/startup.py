from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI

from fastapi_tasks import Task, add_tasks, get_tasks

#: Seconds between two refreshes.
REFRESH_EVERY = 60.0

prices: dict[str, float] = {}


async def fetch_prices() -> dict[str, float]:
    await anyio.sleep(0.01)  # a call to the pricing service
    return {"EUR": 1.08, "GBP": 1.27}


async def refresh_prices() -> None:
    prices.update(await fetch_prices())


async def report(task: Task[..., Any], error: Exception) -> None:
    print(f"{task.name} failed: {error!r}; the next run is at the next tick")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Runs now, then every REFRESH_EVERY seconds until shutdown.
    get_tasks(app).task(timeout=10).every(
        REFRESH_EVERY, refresh_prices, name="refresh-prices", on_error=report
    )
    yield


app = FastAPI(lifespan=lifespan)
add_tasks(app)


@app.get("/prices")
async def read_prices() -> dict[str, float]:
    return prices


@app.get("/health/tasks")
async def task_health() -> dict[str, int | str]:
    return get_tasks(app).stats().to_dict()
