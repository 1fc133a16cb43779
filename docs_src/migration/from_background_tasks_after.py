from fastapi import FastAPI

from fastapi_tasks import Tasks, add_tasks

app = FastAPI()
add_tasks(app, thread_limit=8)  # the one extra line: plain def tasks get 8 threads of their own
sent: list[str] = []


def send_welcome_email(address: str) -> None:
    sent.append(address)


@app.post("/users")
async def create_user(email: str, tasks: Tasks) -> dict[str, str]:
    tasks.after_response.schedule(send_welcome_email, email)  # add_task -> after_response.schedule
    return {"email": email}
