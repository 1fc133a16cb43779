from fastapi import FastAPI

from fastapi_tasks import add_tasks, get_tasks

app = FastAPI()
add_tasks(app)

steps: list[str] = []


async def publish_thumbnail(photo_id: int) -> None:
    steps.append(f"thumbnail of photo {photo_id} published")


async def make_thumbnail(photo_id: int) -> None:
    steps.append(f"thumbnail of photo {photo_id} made")
    # A task has no request, but the app-level scheduler works anywhere in the process.
    get_tasks(app).task(name="publish-thumbnail").schedule(publish_thumbnail, photo_id)


@app.post("/photos/{photo_id}")
async def upload_photo(photo_id: int) -> dict[str, int]:
    # Also usable from an endpoint that does not declare `tasks: Tasks`.
    get_tasks(app).schedule(make_thumbnail, photo_id)
    return {"photo_id": photo_id}
