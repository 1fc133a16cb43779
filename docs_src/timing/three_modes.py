from fastapi import FastAPI

from fastapi_tasks import Tasks, add_tasks

app = FastAPI()
add_tasks(app)

journal: list[str] = []  # what ran, in the order it ran


async def reserve_stock(order_id: int) -> None:
    journal.append(f"stock reserved for order {order_id}")


async def record_sale(order_id: int, amount: float) -> None:
    journal.append(f"sale of {amount:.2f} recorded for order {order_id}")


async def email_receipt(order_id: int, *, to: str) -> None:
    journal.append(f"receipt for order {order_id} sent to {to}")


@app.post("/orders/{order_id}")
async def place_order(order_id: int, amount: float, email: str, tasks: Tasks) -> dict[str, int]:
    # 1. Starts right away and runs alongside the rest of this function.
    tasks.schedule(reserve_stock, order_id)

    # 2. Starts once this function has returned, just before the response goes out.
    tasks.after_route.schedule(record_sale, order_id, amount)

    # 3. Starts once the last byte of the response has been sent.
    tasks.after_response.schedule(email_receipt, order_id, to=email)

    return {"order_id": order_id}
