from fastapi import FastAPI

from fastapi_tasks import Tasks, add_tasks

app = FastAPI()
add_tasks(app)  # once, right after creating the app

outbox: list[str] = []  # stands in for a real mail service


async def send_welcome_email(address: str) -> None:
    outbox.append(f"Welcome aboard, {address}!")


@app.post("/signup")
async def signup(email: str, tasks: Tasks) -> dict[str, str]:
    # The client gets its answer first; the email goes out once the response is sent.
    tasks.after_response.schedule(send_welcome_email, email)
    return {"status": "registered", "email": email}
