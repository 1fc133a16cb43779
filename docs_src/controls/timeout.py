import logging

import anyio
from fastapi import FastAPI

from fastapi_tasks import AnyTask, FastAPITasksTimeoutError, Tasks, add_tasks

logger = logging.getLogger("app")
thumbnails: dict[str, bytes] = {}


async def render_thumbnail(image_id: str) -> None:
    await anyio.sleep(0.01)  # an HTTP call, an image library in a thread...
    thumbnails[image_id] = b"..."


async def report(task: AnyTask, error: Exception) -> None:
    if isinstance(error, FastAPITasksTimeoutError):
        logger.warning("%s gave up after its timeout", task.name)


def create_app(*, timeout: float = 10.0) -> FastAPI:
    app = FastAPI()
    add_tasks(app)

    @app.post("/images/{image_id}")
    async def upload(image_id: str, tasks: Tasks) -> dict[str, str]:
        # Still running `timeout` seconds after it started: cancelled, ends "failed"
        # with FastAPITasksTimeoutError, and report() receives that error.
        tasks.task(timeout=timeout, on_error=report).schedule(render_thumbnail, image_id)
        return {"status": "uploaded"}

    return app


app = create_app()
