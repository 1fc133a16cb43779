import contextvars
import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from fastapi_tasks import Tasks, add_tasks

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
audit_log: list[str] = []

app = FastAPI()
add_tasks(app)


@app.middleware("http")
async def bind_request_id(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    token = request_id.set(request.headers.get("x-request-id", "-"))
    try:
        return await call_next(request)
    finally:
        request_id.reset(token)


async def audit(action: str) -> None:
    # Runs after the response, in a copy of the context of the schedule() call:
    # it sees this request's id, whatever other requests are doing meanwhile.
    audit_log.append(f"{request_id.get()}: {action}")


def archive(document: str) -> None:
    # A sync task runs in a thread, in its own copy of the same context.
    logging.getLogger(__name__).info("archiving %s for %s", document, request_id.get())
    audit_log.append(f"{request_id.get()}: archived {document}")


@app.post("/documents/{document}")
async def upload(document: str, tasks: Tasks) -> dict[str, str]:
    tasks.after_response.schedule(audit, f"uploaded {document}")
    tasks.after_response.schedule(archive, document)
    return {"request_id": request_id.get()}
