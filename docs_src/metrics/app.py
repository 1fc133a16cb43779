from fastapi import FastAPI

from fastapi_tasks import Tasks, add_tasks
from fastapi_tasks.prometheus import add_metrics_route, instrument

app = FastAPI()
add_tasks(app)
instrument(app)  # registers the metrics in prometheus_client's global registry
# GET /metrics (no redirect); aggregates all workers if PROMETHEUS_MULTIPROC_DIR is set
add_metrics_route(app)


async def resize(image_id: int) -> None: ...


@app.post("/images/{image_id}")
async def upload(image_id: int, tasks: Tasks) -> dict[str, int]:
    tasks.task(name="resize").schedule(resize, image_id)  # the name becomes the "task" label
    return {"image_id": image_id}
