from typing import Annotated

from fastapi import Depends, FastAPI

from fastapi_tasks import AnyTask, TaskConfig, Tasks, TaskScheduler, add_tasks

incidents: list[str] = []
done: list[str] = []


def record_incident(task: AnyTask, error: Exception) -> None:
    # A plain function runs in the runtime's worker threads: blocking I/O is fine here.
    incidents.append(f"{task.name}: {type(error).__name__}")


app = FastAPI()
# Every task starts from this configuration; per-task settings override it field by field.
add_tasks(app, config=TaskConfig(on_error=record_incident))


def critical_tasks(tasks: Tasks) -> TaskScheduler:
    """A scheduler for work that must finish even when the server is shutting down."""
    return tasks.task(shield=True)


CriticalTasks = Annotated[TaskScheduler, Depends(critical_tasks)]


async def rebuild_index(shop: str) -> None:
    done.append(f"index of {shop} rebuilt")


async def sync_partner_feed(shop: str) -> None:
    raise TimeoutError("partner API did not answer")


@app.post("/shops/{shop}/refresh")
async def refresh(shop: str, tasks: Tasks, critical: CriticalTasks) -> dict[str, bool]:
    # Inherits on_error=record_incident from the global config, and gets a name.
    tasks.task(name="partner-feed").schedule(sync_partner_feed, shop)

    # Shielded through the dependency, still reports failures to record_incident.
    task = critical.schedule(rebuild_index, shop)
    return {"shielded": task.config.shielded, "has_handler": task.config.on_error is not None}
