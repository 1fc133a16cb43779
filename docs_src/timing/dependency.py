from typing import Annotated

from fastapi import Depends, FastAPI, Header

from fastapi_tasks import Tasks, TaskScheduler, add_tasks

app = FastAPI()
add_tasks(app)

audit_trail: list[str] = []


async def write_audit_entry(user: str, action: str) -> None:
    audit_trail.append(f"{user}: {action}")


async def current_user(tasks: Tasks, x_user: Annotated[str, Header()]) -> str:
    # A dependency can schedule too; it receives the same scheduler as the endpoint.
    tasks.after_route.schedule(write_audit_entry, x_user, "authenticated")
    return x_user


CurrentUser = Annotated[str, Depends(current_user)]


@app.post("/articles/{slug}/publish")
async def publish(slug: str, user: CurrentUser, tasks: Tasks) -> dict[str, str]:
    tasks.after_route.schedule(write_audit_entry, user, f"published {slug}")
    return {"published": slug}


def reusable_scheduler(tasks: Tasks) -> TaskScheduler:
    # Dependencies can also hand out a pre-configured scheduler (see "Task configuration").
    return tasks.task(name="audit")


@app.get("/whoami")
async def whoami(
    user: CurrentUser, audit: Annotated[TaskScheduler, Depends(reusable_scheduler)]
) -> dict[str, str]:
    audit.after_response.schedule(write_audit_entry, user, "looked at their profile")
    return {"user": user}
