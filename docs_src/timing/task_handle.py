import anyio
import anyio.lowlevel
from fastapi import FastAPI, Response

from fastapi_tasks import Tasks, TaskState, add_tasks

app = FastAPI()
add_tasks(app)

reports: dict[int, str] = {}


async def build_report(report_id: int) -> None:
    await anyio.lowlevel.checkpoint()  # a real report would query a database here
    reports[report_id] = f"report #{report_id}: all good"


@app.post("/reports/{report_id}")
async def create_report(
    report_id: int, response: Response, tasks: Tasks, wait: float = 1.0
) -> dict[str, str]:
    task = tasks.schedule(build_report, report_id)

    # Give the task a short head start; answer with the result if it makes it in time.
    with anyio.move_on_after(wait):
        await task.wait()  # returns whatever the outcome: check task.state

    if task.state is TaskState.SUCCEEDED:
        return {"report": reports[report_id]}
    response.status_code = 202  # not done in time: it carries on in the background
    return {"state": task.state.value, "task": task.name}
