import os

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from fastapi_tasks import add_tasks, get_tasks

# Too much waiting work means this worker should get no new traffic for a while.
READY_MAX_PENDING = 200

app = FastAPI()
add_tasks(app, shutdown_timeout=float(os.environ.get("TASKS_SHUTDOWN_TIMEOUT", "15")))


@app.get("/health/live")
async def live() -> dict[str, str]:
    # Liveness: the process answers. Do not fail it because tasks are busy.
    return {"status": "alive"}


@app.get("/health/ready")
async def ready() -> JSONResponse:
    stats = get_tasks(app).stats()
    is_ready = stats.state == "running" and stats.pending < READY_MAX_PENDING
    return JSONResponse(
        {"ready": is_ready, "state": stats.state, "pending": stats.pending},
        status_code=200 if is_ready else 503,
    )


@app.get("/health/tasks")
async def task_stats() -> dict[str, int | str]:
    # A plain, JSON-friendly snapshot: state, pid, counters, thread usage.
    return get_tasks(app).stats().to_dict()
