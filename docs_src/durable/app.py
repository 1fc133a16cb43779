from fastapi import FastAPI
from taskiq import InMemoryBroker  # in production: e.g. taskiq_redis.ListQueueBroker(url)

from fastapi_tasks import Tasks, add_tasks
from fastapi_tasks.taskiq import add_durable_broker

broker = InMemoryBroker()
charged: list[int] = []


@broker.task
async def charge_card(order_id: int) -> None:  # runs on a taskiq worker
    charged.append(order_id)


async def update_dashboard(order_id: int) -> None:  # runs in this process
    pass


app = FastAPI()
add_tasks(app)
add_durable_broker(app, broker)  # starts and stops the broker with the app


@app.post("/orders/{order_id}")
async def place_order(order_id: int, tasks: Tasks) -> dict[str, int]:
    tasks.after_response.schedule(update_dashboard, order_id)  # in-process: fine to lose
    tasks.durable.after_response.schedule(charge_card, order_id)  # must survive a crash
    return {"order_id": order_id}
