from fastapi import FastAPI

from fastapi_tasks import AnyTask, Retry, TaskConfig, Tasks, add_tasks

delivered: list[str] = []
gave_up: list[str] = []


class TemporaryError(Exception):
    """The receiving server answered 503 or the connection dropped."""


async def deliver_webhook(url: str, event: str) -> None:
    delivered.append(event)  # an HTTP POST that may raise TemporaryError


async def give_up(task: AnyTask, error: Exception) -> None:
    # Runs once, after the last attempt failed.
    gave_up.append(f"{task.name} failed {task.attempts} times: {type(error).__name__}")


def create_app(*, backoff: float = 0.5) -> FastAPI:
    app = FastAPI()
    # Every task of this app: up to 5 attempts on TemporaryError, waiting about
    # 0.5 s, 1 s, 2 s, 4 s in between (never more than 30 s; jitter spreads them).
    retry = Retry(attempts=5, backoff=backoff, on=(TemporaryError,))
    add_tasks(app, config=TaskConfig(retry=retry, on_error=give_up))

    @app.post("/orders/{order_id}/paid")
    async def paid(order_id: str, tasks: Tasks) -> dict[str, str]:
        tasks.task(name="webhook").schedule(
            deliver_webhook, "https://partner.example/hook", f"paid:{order_id}"
        )
        return {"status": "ok"}

    return app


app = create_app()
