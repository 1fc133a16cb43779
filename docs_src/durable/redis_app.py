from fastapi import FastAPI, HTTPException

from fastapi_tasks import AnyTask, Tasks, TaskState, add_tasks
from fastapi_tasks.taskiq import add_durable_broker

from .broker import broker, charge_card

#: Enqueues that failed, kept for a later re-send (use a database table in production).
outbox: list[dict[str, object]] = []


def save_to_outbox(task: AnyTask, error: Exception) -> None:
    """``on_error`` of the enqueue task: the broker is unreachable, keep the job."""
    outbox.append({"task": task.name, "args": task.args, "kwargs": task.kwargs})


app = FastAPI()
add_tasks(app)
add_durable_broker(app, broker)


@app.post("/orders/{order_id}")
async def place_order(order_id: int, tasks: Tasks) -> dict[str, int]:
    """Fire and forget: answers at once, even when Redis is down (the job goes to the outbox)."""
    tasks.durable.after_response.task(on_error=save_to_outbox).schedule(charge_card, order_id)
    return {"order_id": order_id}


@app.post("/orders/{order_id}/confirmed")
async def place_order_confirmed(order_id: int, tasks: Tasks) -> dict[str, int]:
    """Answers only once the job is safely queued; 503 when the broker is unreachable."""
    task = tasks.durable.task(on_error=save_to_outbox).schedule(charge_card, order_id)
    await task.wait()
    if task.state is not TaskState.SUCCEEDED:
        raise HTTPException(status_code=503, detail="could not queue the payment, retry later")
    return {"order_id": order_id}
