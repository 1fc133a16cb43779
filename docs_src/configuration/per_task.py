import logging

from fastapi import FastAPI

from fastapi_tasks import AnyTask, Tasks, add_tasks

app = FastAPI()
add_tasks(app)

logger = logging.getLogger("shop")
ledger: list[str] = []
failures: list[str] = []


async def charge_card(order_id: int, cents: int) -> None:
    ledger.append(f"order {order_id}: charged {cents} cents")


async def warm_cache(order_id: int) -> None:
    raise ConnectionError("cache is down")


async def report_failure(task: AnyTask, error: Exception) -> None:
    failures.append(f"{task.name} failed: {error}")
    logger.warning("task %s failed", task.name)


@app.post("/orders/{order_id}/pay")
async def pay(order_id: int, cents: int, tasks: Tasks) -> dict[str, int]:
    # A name for logs and shutdown reports, and protection from cancellation at shutdown.
    tasks.task(name="charge-card", shield=True).schedule(charge_card, order_id, cents)

    # A handler called with (task, error) if the function raises.
    tasks.task(on_error=report_failure).after_response.schedule(warm_cache, order_id)

    return {"order_id": order_id}
