from collections.abc import AsyncIterator

import anyio.lowlevel
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from fastapi_tasks import Tasks, add_tasks

app = FastAPI()
add_tasks(app)

downloads: list[str] = []


async def log_download(name: str, rows: int) -> None:
    downloads.append(f"{name}: {rows} rows downloaded")


async def mark_export_started(name: str) -> None:
    downloads.append(f"{name}: export started")


@app.get("/exports/{name}.csv")
async def export_csv(name: str, rows: int, tasks: Tasks) -> StreamingResponse:
    # Released when the headers go out, before the first chunk is produced.
    started = tasks.after_route.schedule(mark_export_started, name)
    # Released after the last chunk; dropped if the client goes away before that.
    finished = tasks.after_response.schedule(log_download, name, rows)

    async def produce() -> AsyncIterator[str]:
        await started.wait()  # released when the headers went out: it can finish now
        yield f"# export started: {started.done()}\n"
        for i in range(rows):
            # A real export awaits its data source; this await stands for it. A generator
            # that never awaits never lets the server notice that the client went away.
            await anyio.lowlevel.checkpoint()
            yield f"{i},row {i}\n"
        # Still queued: the last chunk has not been sent yet.
        yield f"# download logged yet: {finished.done()}\n"

    return StreamingResponse(produce(), media_type="text/csv")
