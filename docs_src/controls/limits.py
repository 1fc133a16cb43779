import anyio
import anyio.lowlevel
from fastapi import FastAPI

from fastapi_tasks import Tasks, add_tasks

sent: list[str] = []


async def send_email(to: str) -> None:
    await anyio.sleep(0.01)  # the mail server accepts a few connections at a time
    sent.append(to)


async def refresh_cache(key: str) -> None:
    await anyio.lowlevel.checkpoint()


def create_app(*, async_limit: int = 200, email_limit: int = 5) -> FastAPI:
    app = FastAPI()
    # At most 200 async tasks run at once, whatever their name (the counterpart of
    # thread_limit); the others wait, in order, as "pending".
    add_tasks(app, async_limit=async_limit)

    @app.post("/signup")
    async def signup(email: str, tasks: Tasks) -> dict[str, str]:
        # At most 5 "send-email" tasks run at once, across all requests.
        tasks.task(name="send-email", limit=email_limit).schedule(send_email, email)
        tasks.schedule(refresh_cache, "signups")  # not held back by the email limit
        return {"status": "welcome"}

    return app


app = create_app()
