from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fastapi_tasks import add_tasks, get_tasks

warmed: list[str] = []


async def warm_cache(region: str) -> None:
    warmed.append(region)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The runtime accepts tasks here already; they start as soon as startup has finished.
    for region in ("eu", "us"):
        get_tasks(app).schedule(warm_cache, region)
    yield


app = FastAPI(lifespan=lifespan)
add_tasks(app)
