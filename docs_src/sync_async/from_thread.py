import anyio.from_thread
from fastapi import FastAPI

from fastapi_tasks import Tasks, add_tasks

app = FastAPI()
add_tasks(app)

published: list[str] = []


async def publish(message: str) -> None:
    published.append(message)


def import_rows(rows: list[str]) -> None:
    for row in rows:
        anyio.from_thread.check_cancelled()  # stop between rows if the server shuts down
        cleaned = row.strip().upper()  # blocking, CPU-bound or legacy sync code goes here
        # Call async code from a sync task: this waits for it on the event loop.
        anyio.from_thread.run(publish, cleaned)


@app.post("/imports")
async def start_import(rows: list[str], tasks: Tasks) -> dict[str, int]:
    tasks.schedule(import_rows, rows)
    return {"rows": len(rows)}
