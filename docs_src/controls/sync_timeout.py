import anyio.from_thread
from fastapi import FastAPI

from fastapi_tasks import Tasks, add_tasks

exported: list[str] = []


def export_rows(table: str, rows: int) -> None:
    for _ in range(rows):
        # A thread cannot be interrupted: once the timeout has passed this raises,
        # so the function stops instead of running on for nothing.
        anyio.from_thread.check_cancelled()
        ...  # write one row
    exported.append(table)


def create_app(*, timeout: float = 60.0) -> FastAPI:
    app = FastAPI()
    add_tasks(app)

    @app.post("/export/{table}")
    async def export(table: str, tasks: Tasks, rows: int = 1000) -> dict[str, str]:
        tasks.task(timeout=timeout).schedule(export_rows, table, rows)
        return {"status": "exporting"}

    return app


app = create_app()
