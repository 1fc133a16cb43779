import anyio
from fastapi import FastAPI, HTTPException

from fastapi_tasks import PeriodicTask, Tasks, add_tasks

#: Seconds between two checks of a watched order.
CHECK_EVERY = 30.0

app = FastAPI()
add_tasks(app)

watchers: dict[int, PeriodicTask] = {}
checks: dict[int, int] = {}


async def check_order(order_id: int) -> None:
    await anyio.sleep(0.01)  # ask the carrier where the parcel is
    checks[order_id] = checks.get(order_id, 0) + 1


@app.post("/orders/{order_id}/watch", status_code=201)
async def watch(order_id: int, tasks: Tasks) -> dict[str, str]:
    if order_id in watchers:
        raise HTTPException(409, "already watched")
    watchers[order_id] = tasks.every(CHECK_EVERY, check_order, order_id, name="check-order")
    return {"watching": watchers[order_id].name}


@app.delete("/orders/{order_id}/watch")
async def unwatch(order_id: int) -> dict[str, bool]:
    periodic = watchers.pop(order_id, None)
    if periodic is None:
        raise HTTPException(404, "not watched")
    return {"stopped": periodic.cancel()}  # False if shutdown already stopped it
