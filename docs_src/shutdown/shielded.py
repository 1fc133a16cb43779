from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.from_thread
from fastapi import FastAPI, Request

from fastapi_tasks import Tasks, add_tasks


class PaymentGateway:
    async def capture(self, order_id: int) -> str:
        await anyio.sleep(0.01)  # a call to the payment provider
        return f"payment-{order_id}"


class Mailer:
    async def send(self, to: str, body: str) -> None:
        await anyio.sleep(0.01)  # a call to the mail provider


class Ledger:
    """Opened and closed by the app's lifespan, like a database pool would be."""

    def __init__(self) -> None:
        self.rows: list[str] = []
        self.closed = False

    def record(self, row: str) -> None:
        if self.closed:
            raise RuntimeError("ledger is closed")
        self.rows.append(row)


gateway = PaymentGateway()
mailer = Mailer()
exported: list[str] = []


async def capture_payment(ledger: Ledger, order_id: int) -> None:
    reference = await gateway.capture(order_id)
    ledger.record(f"order {order_id} paid: {reference}")


async def send_confirmation(email: str, order_id: int) -> None:
    await mailer.send(email, f"Order {order_id} confirmed")


def write_batch(batch: list[str]) -> None:
    exported.extend(batch)  # blocking I/O in real life


def export_orders(batches: list[list[str]]) -> None:
    for batch in batches:
        # A thread cannot be interrupted; this is where it notices the shutdown and stops.
        anyio.from_thread.check_cancelled()
        write_batch(batch)


def create_app(shutdown_timeout: float | None = 25.0) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Ledger]]:
        ledger = Ledger()
        yield {"ledger": ledger}
        ledger.closed = True  # runs after the task drain: shielded tasks could still write

    app = FastAPI(lifespan=lifespan)
    add_tasks(app, shutdown_timeout=shutdown_timeout)

    @app.post("/orders/{order_id}")
    async def place_order(
        order_id: int, email: str, request: Request, tasks: Tasks
    ) -> dict[str, int]:
        # Money moved: this must finish, even if the server is asked to stop.
        tasks.task(name="capture-payment", shield=True).schedule(
            capture_payment, request.state.ledger, order_id
        )
        # Nice to have: dropped or cancelled at shutdown.
        tasks.after_response.schedule(send_confirmation, email, order_id)
        return {"order_id": order_id}

    @app.post("/exports")
    async def start_export(batches: list[list[str]], tasks: Tasks) -> dict[str, int]:
        tasks.task(name="export-orders").schedule(export_orders, batches)
        return {"batches": len(batches)}

    return app


app = create_app()
