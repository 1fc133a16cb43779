import contextlib
import uuid
from typing import Any

import anyio
from fastapi import FastAPI, HTTPException

from fastapi_tasks import FastAPITasksTimeoutError, Task, Tasks, TaskState, add_tasks

app = FastAPI()
add_tasks(app)

reports: dict[str, Task[..., Any]] = {}


async def build_report(month: str) -> dict[str, Any]:
    await anyio.sleep(0.01)  # a slow query
    return {"month": month, "total": 1234}


@app.post("/reports/{month}")
async def start_report(month: str, tasks: Tasks) -> dict[str, str]:
    report_id = uuid.uuid4().hex
    reports[report_id] = tasks.task(name="report").schedule(build_report, month)
    return {"id": report_id}


@app.get("/reports/{report_id}")
async def get_report(report_id: str, wait: float = 0) -> dict[str, Any]:
    task = reports.get(report_id)
    if task is None:
        raise HTTPException(404)
    # Give a quick job the chance to finish; if it is still running after `wait`
    # seconds, FastAPITasksTimeoutError is raised and the task goes on.
    with contextlib.suppress(FastAPITasksTimeoutError):
        await task.wait(timeout=wait)
    if task.state is TaskState.SUCCEEDED:
        return {"state": "done", "report": task.result()}
    return {"state": task.state.value}


@app.delete("/reports/{report_id}")
async def cancel_report(report_id: str) -> dict[str, bool]:
    task = reports.pop(report_id, None)
    # False when it had already finished (there is nothing left to cancel).
    return {"cancelled": task is not None and task.cancel()}
