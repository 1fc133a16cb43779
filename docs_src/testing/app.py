from fastapi import FastAPI

from fastapi_tasks import Tasks, add_tasks


class Mailer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, subject: str) -> None:
        self.sent.append((to, subject))  # a real mailer would talk to an SMTP server


async def count_signup(stats: dict[str, int]) -> None:
    stats["signups"] = stats.get("signups", 0) + 1


def create_app(mailer: Mailer) -> FastAPI:
    app = FastAPI()
    add_tasks(app)
    app.state.signup_stats = {}

    @app.post("/signup")
    async def signup(email: str, tasks: Tasks) -> dict[str, str]:
        tasks.schedule(count_signup, app.state.signup_stats)
        tasks.after_response.schedule(mailer.send, email, "Welcome!")
        return {"email": email}

    return app
