"""A tour of fastapi-tasks in one small app.

Run it from the repository root and open http://127.0.0.1:8000/docs::

    uvicorn docs_src.demo_app:app

Then try the endpoints, watch the log, read ``GET /activity``, ``GET /health`` and (with the
prometheus extra installed) ``GET /metrics``, and stop the server with Ctrl+C while a report is
being built to see the shielded task finish first.
"""

import contextvars
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import RedirectResponse

from fastapi_tasks import AnyTask, TaskConfig, Tasks, add_tasks, get_tasks

logger = logging.getLogger("demo")

CallNext = Callable[[Request], Awaitable[Response]]

#: How long the pretend work takes, in seconds (the tests set these to 0).
WORK_SECONDS = 0.2
REPORT_SECONDS = 5.0

#: The most recent things the tasks did, newest last (see GET /activity).
activity: deque[str] = deque(maxlen=100)

#: When the current request arrived. Tasks run in a copy of the context they were scheduled
#: in, so each task sees the arrival time of the request that scheduled it.
request_arrived: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "request_arrived", default=None
)


def since_request() -> str:
    """Time since the request that scheduled the running task arrived, as ``+0.201s``."""
    arrived = request_arrived.get()
    return "" if arrived is None else f"+{time.monotonic() - arrived:.3f}s"


def note(line: str) -> None:
    """Record ``line``, prefixed with the time since the request arrived, so the log shows
    *when* things happen, not just in which order they finished."""
    when = since_request()
    if when:
        line = f"{when} {line}"
    activity.append(line)
    logger.info(line)


# ---------------------------------------------------------------------------- the tasks
async def reserve_stock(order_id: int) -> None:
    began = since_request()
    await anyio.sleep(WORK_SECONDS)
    note(f"[now] stock reserved for order {order_id} (started {began})")


def write_audit_entry(order_id: int) -> None:
    began = since_request()
    time.sleep(WORK_SECONDS)  # a plain function: it runs in the runtime's own threads
    note(f"[after_route] audit entry written for order {order_id} (sync task, started {began})")


async def send_receipt(order_id: int, email: str) -> None:
    began = since_request()
    await anyio.sleep(WORK_SECONDS)
    note(f"[after_response] receipt for order {order_id} sent to {email} (started {began})")


async def build_report(report_id: int) -> None:
    note(f"[shielded] building report {report_id}...")
    await anyio.sleep(REPORT_SECONDS)
    note(f"[shielded] report {report_id} is ready")


async def call_partner(order_id: int) -> None:
    raise ConnectionError(f"partner API refused order {order_id}")


# ---------------------------------------------------------------------------- error handlers
async def log_failure(task: AnyTask, error: Exception) -> None:
    """The global handler: every task that raises ends up here unless it has its own."""
    note(f"[on_error] {task.name} failed: {error!r}")


def record_partner_failure(task: AnyTask, error: Exception) -> None:
    """A per-task handler; plain functions run in the runtime's threads."""
    note(f"[on_error] partner call for order {task.args[0]} will be retried tonight")


# ---------------------------------------------------------------------------- the app
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if not logging.getLogger().handlers:  # show our INFO lines next to uvicorn's
        logging.basicConfig(level=logging.INFO, format="%(levelname)-9s %(name)s: %(message)s")
    note("app started")
    yield
    note("app stopped (after the task drain)")


app = FastAPI(title="fastapi-tasks demo", lifespan=lifespan)
add_tasks(app, config=TaskConfig(on_error=log_failure), thread_limit=8, shutdown_timeout=30)


@app.middleware("http")
async def remember_arrival(request: Request, call_next: CallNext) -> Response:
    request_arrived.set(time.monotonic())
    return await call_next(request)


@app.get("/", include_in_schema=False)
async def home() -> RedirectResponse:
    return RedirectResponse("/docs")


@app.post("/orders/{order_id}")
async def place_order(order_id: int, email: str, tasks: Tasks) -> dict[str, int]:
    """All three timing modes, one of them a sync task: read GET /activity to see when each
    started, relative to the request."""
    tasks.schedule(reserve_stock, order_id)
    tasks.after_route.schedule(write_audit_entry, order_id)
    tasks.after_response.schedule(send_receipt, order_id, email)
    return {"order_id": order_id}


@app.post("/orders/{order_id}/cancel")
async def cancel_order(order_id: int, tasks: Tasks) -> dict[str, int]:
    """Deferred tasks are dropped when the endpoint raises: try an order id above 1000."""
    tasks.after_response.schedule(send_receipt, order_id, "nobody@example.com")
    if order_id > 1000:
        raise HTTPException(status_code=404, detail="no such order")
    return {"cancelled": order_id}


@app.post("/reports/{report_id}")
async def request_report(report_id: int, tasks: Tasks) -> dict[str, str]:
    """A shielded task: stop the server while it runs and it still completes."""
    task = tasks.task(name="build-report", shield=True).schedule(build_report, report_id)
    return {"task": task.name}


@app.post("/partners/{order_id}")
async def notify_partner(order_id: int, tasks: Tasks) -> dict[str, str]:
    """A failing task with its own error handler, and one that uses the global handler."""
    tasks.task(name="partner-call", on_error=record_partner_failure).schedule(
        call_partner, order_id
    )
    tasks.task(name="partner-call-default-handler").schedule(call_partner, order_id)
    return {"status": "the partner will be told"}


@app.get("/activity")
async def recent_activity() -> list[str]:
    return list(activity)


@app.get("/health")
async def health() -> dict[str, int | str]:
    return get_tasks(app).stats().to_dict()


# ---------------------------------------------------------------------------- metrics (optional)
try:  # with the prometheus extra installed: pip install 'fastapi-tasks[prometheus]'
    from prometheus_client import CollectorRegistry

    from fastapi_tasks.prometheus import add_metrics_route, instrument
except ImportError:  # pragma: no cover - the extra is not installed
    pass
else:
    registry = CollectorRegistry()  # the demo's own; a real app would use the global one
    instrument(app, registry=registry)
    add_metrics_route(app, registry=registry)
