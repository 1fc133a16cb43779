import logging
import threading

from fastapi import FastAPI

from fastapi_tasks import AnyTask, Tasks, add_tasks

app = FastAPI()
add_tasks(app)

logger = logging.getLogger("billing")
dead_letters: list[dict[str, object]] = []


async def push_invoice(invoice_id: int, api_key: str) -> None:
    raise ConnectionError(f"billing service unreachable for invoice {invoice_id}")


async def park_for_later(task: AnyTask, error: Exception) -> None:
    # Async handler: runs on the event loop, like the task itself.
    dead_letters.append(
        {
            "task": task.name,
            "invoice_id": task.args[0],  # your handler may read the arguments; logs never do
            "error": repr(error),
            "thread": threading.current_thread().name,
        }
    )


def write_to_disk(task: AnyTask, error: Exception) -> None:
    # Plain handler: runs in one of the runtime's threads, so blocking calls are fine.
    dead_letters.append(
        {"task": task.name, "error": repr(error), "thread": threading.current_thread().name}
    )


def broken_handler(task: AnyTask, error: Exception) -> None:
    raise RuntimeError("the handler itself failed")  # logged, never crashes anything


@app.post("/invoices/{invoice_id}/send")
async def send_invoice(invoice_id: int, tasks: Tasks) -> dict[str, str]:
    # The endpoint never sees the failure: its response is already on its way.
    tasks.task(name="push-invoice", on_error=park_for_later).schedule(
        push_invoice, invoice_id, api_key="secret-key"
    )
    tasks.task(name="push-invoice-copy", on_error=write_to_disk).schedule(
        push_invoice, invoice_id, api_key="secret-key"
    )
    tasks.task(name="push-invoice-unlucky", on_error=broken_handler).schedule(
        push_invoice, invoice_id, api_key="secret-key"
    )
    return {"status": "queued"}
