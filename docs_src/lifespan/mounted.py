"""An outer app that does not use fastapi-tasks, mounting one that does."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fastapi_tasks import Tasks, add_tasks, task_runtime

reports = FastAPI()  # the sub-application: its own lifespan never runs once mounted
add_tasks(reports, shutdown_timeout=10)

built: list[str] = []


async def build_report(name: str) -> None:
    built.append(name)


@reports.post("/{name}")
async def request_report(name: str, tasks: Tasks) -> dict[str, str]:
    tasks.after_response.schedule(build_report, name)
    return {"report": name, "status": "queued"}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # open the pools the reports need here ...
    async with task_runtime(reports):  # start the sub-app's runtime; drain it on the way out
        yield
    # ... and close them here: the drain above has finished by then


app = FastAPI(lifespan=lifespan)
app.mount("/reports", reports)
