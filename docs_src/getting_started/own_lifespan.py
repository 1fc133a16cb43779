from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from fastapi_tasks import Tasks, add_tasks

events: list[str] = []


class AuditLog:
    """A resource your lifespan opens and closes (think: a database pool, an HTTP client)."""

    def __init__(self) -> None:
        self.entries: list[str] = []
        self.closed = False

    async def write(self, entry: str) -> None:
        if self.closed:
            raise RuntimeError("the audit log is closed")
        self.entries.append(entry)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, AuditLog]]:
    audit_log = AuditLog()
    events.append("app startup")
    yield {"audit_log": audit_log}  # lifespan state: available as request.state.audit_log
    audit_log.closed = True
    events.append("app teardown")


app = FastAPI(lifespan=lifespan)
add_tasks(app)  # wraps your lifespan; it does not replace it


@app.delete("/documents/{doc_id}")
async def delete_document(doc_id: int, request: Request, tasks: Tasks) -> dict[str, int]:
    # Hand the task the resource itself, not the request.
    tasks.after_response.schedule(request.state.audit_log.write, f"deleted document {doc_id}")
    return {"deleted": doc_id}
