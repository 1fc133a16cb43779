from fastapi import FastAPI, HTTPException

from fastapi_tasks import Tasks, add_tasks

app = FastAPI()
add_tasks(app)

profiles = {1: "Ada", 2: "Grace"}
notifications: list[str] = []


async def notify_followers(user_id: int) -> None:
    notifications.append(f"profile {user_id} was updated")


@app.put("/profiles/{user_id}")
async def update_profile(user_id: int, name: str, tasks: Tasks) -> dict[str, str]:
    # Queued first, validated second: if the request fails, the notification is dropped.
    tasks.after_response.schedule(notify_followers, user_id)
    if user_id not in profiles:
        raise HTTPException(status_code=404, detail="no such profile")
    profiles[user_id] = name
    return {"name": name}
