import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fastapi_tasks import FastAPITasksQueueFullError, Tasks, add_tasks

converted: list[str] = []


def convert_video(name: str) -> None:
    time.sleep(0.01)  # CPU-heavy or blocking work
    converted.append(name)


def create_app(*, thread_limit: int = 4, max_pending: int = 100) -> FastAPI:
    app = FastAPI()
    # 4 conversions at a time; at most 100 more may wait. Beyond that, schedule() refuses.
    add_tasks(app, thread_limit=thread_limit, max_pending=max_pending)

    @app.exception_handler(FastAPITasksQueueFullError)
    async def queue_full(request: Request, exc: FastAPITasksQueueFullError) -> JSONResponse:
        # Tell well-behaved clients to come back later instead of piling up more work.
        return JSONResponse(
            {"detail": "too busy, try again shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.post("/videos/{name}/convert")
    async def convert(name: str, tasks: Tasks) -> dict[str, str]:
        tasks.schedule(convert_video, name)  # raises FastAPITasksQueueFullError when full
        return {"status": "queued"}

    return app


app = create_app()
