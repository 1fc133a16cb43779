import logging

from fastapi import FastAPI

from fastapi_tasks import AnyTask, ErrorHandler, TaskConfig, Tasks, add_tasks

logger = logging.getLogger("shop")
app = FastAPI()

# TaskConfig is frozen: build it with the values you want (or derive one with merge()).
defaults = TaskConfig(shield=True)
add_tasks(app, config=defaults)

attempts: list[int] = []


async def retry_once(task: AnyTask, error: Exception) -> None:
    try:
        await task()  # runs the function again and returns its result, or raises
    except Exception as again:
        logger.error("%s failed twice: %r", task.name, again)


on_error: ErrorHandler = retry_once


async def charge(order_id: int) -> None:
    attempts.append(order_id)
    if len(attempts) == 1:
        raise ConnectionError("payment gateway timed out")


@app.post("/orders/{order_id}")
async def place_order(order_id: int, tasks: Tasks) -> dict[str, int]:
    tasks.task(name="charge", on_error=on_error).schedule(charge, order_id)
    return {"order_id": order_id}
