# fastapi-tasks 0.1.0. With this version the imports below fail: see the "after" file.
# isort: skip_file
import logging

from fastapi import FastAPI

from fastapi_tasks import TaskErrorHandler, Tasks, add_tasks  # type: ignore[attr-defined]
from fastapi_tasks.tasks import Task, TaskConfig  # type: ignore[import-not-found]

logger = logging.getLogger("shop")
app = FastAPI()
add_tasks(app)

defaults = TaskConfig()
defaults.shield = True  # 0.1.0's TaskConfig was a mutable dataclass


async def retry_once(task: Task, error: Exception) -> None:
    await task()  # 0.1.0: ran it again, then logged and swallowed a second failure


on_error: TaskErrorHandler = retry_once


async def charge(order_id: int) -> None: ...


@app.post("/orders/{order_id}")
async def place_order(order_id: int, tasks: Tasks) -> dict[str, int]:
    tasks.task(name="charge", on_error=on_error).schedule(charge, order_id)
    return {"order_id": order_id}
