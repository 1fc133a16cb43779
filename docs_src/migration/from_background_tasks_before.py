from fastapi import BackgroundTasks, FastAPI

app = FastAPI()
sent: list[str] = []


def send_welcome_email(address: str) -> None:
    sent.append(address)


@app.post("/users")
async def create_user(email: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(send_welcome_email, email)  # after the response, one by one
    return {"email": email}
