import time

from fastapi import FastAPI

from fastapi_tasks import AnyTask, Tasks, add_tasks, get_tasks

app = FastAPI()
add_tasks(app, thread_limit=8)  # plain def tasks get 8 threads of their own

sent: list[str] = []


def send_welcome_email(address: str) -> None:  # blocking code is fine: it runs in a thread
    time.sleep(0.01)
    sent.append(address)


async def record_signup(address: str) -> None:  # async code runs on the event loop
    sent.append(f"signup {address}")


async def alert(task: AnyTask, error: Exception) -> None:
    print(f"{task.name} failed: {error!r}")


@app.post("/users")
async def create_user(email: str, tasks: Tasks) -> dict[str, str]:
    tasks.schedule(record_signup, email)  # starts now, alongside the endpoint
    tasks.after_response.task(name="welcome-email", on_error=alert).schedule(
        send_welcome_email, email
    )  # starts once the response has been sent
    return {"email": email}


@app.get("/health")
async def health() -> dict[str, int | str]:
    return get_tasks(app).stats().to_dict()
