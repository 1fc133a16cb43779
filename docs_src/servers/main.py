from fastapi import FastAPI

from fastapi_tasks import Tasks, add_tasks, get_tasks

app = FastAPI()
add_tasks(app, shutdown_timeout=20)

confirmations: list[int] = []


async def send_confirmation(order_id: int) -> None:
    confirmations.append(order_id)


@app.post("/orders/{order_id}")
async def create_order(order_id: int, tasks: Tasks) -> dict[str, int]:
    # Starts once the server has the whole response (see "What sent means").
    # Shielded: a graceful shutdown waits for it.
    tasks.after_response.task(shield=True).schedule(send_confirmation, order_id)
    return {"order_id": order_id}


@app.get("/health")
async def health() -> dict[str, int | str]:
    return get_tasks(app).stats().to_dict()
