import logging

import anyio
from fastapi import FastAPI

from fastapi_tasks import AnyTask, Tasks, add_tasks

logger = logging.getLogger("webhooks")

MAX_ATTEMPTS = 4  # the first run plus three retries
BASE_DELAY = 0.5  # seconds before the first retry; doubled before each next one


async def retry_with_backoff(task: AnyTask, error: Exception) -> None:
    """An ``on_error`` handler: run the task again, waiting longer after each failure."""
    for attempt in range(2, MAX_ATTEMPTS + 1):
        delay = BASE_DELAY * 2 ** (attempt - 2)  # 0.5 s, 1 s, 2 s, ...
        logger.info("%s failed (%r); attempt %d in %.1fs", task.name, error, attempt, delay)
        await anyio.sleep(delay)
        try:
            await task()  # runs the function again, here; its exception comes back to us
        except Exception as exc:
            error = exc
        else:
            logger.info("%s succeeded on attempt %d", task.name, attempt)
            return
    logger.error("%s gave up after %d attempts: %r", task.name, MAX_ATTEMPTS, error)


app = FastAPI()
add_tasks(app)

deliveries: list[str] = []
calls: dict[str, int] = {}


async def deliver_webhook(url: str, event: str) -> None:
    calls[url] = calls.get(url, 0) + 1
    if calls[url] < 3:  # pretend the receiver is flaky: two failures, then success
        raise ConnectionError(f"{url} is not answering")
    deliveries.append(f"{event} -> {url}")


@app.post("/events/{event}")
async def publish_event(event: str, url: str, tasks: Tasks) -> dict[str, str]:
    tasks.task(name="deliver-webhook", on_error=retry_with_backoff).after_response.schedule(
        deliver_webhook, url, event
    )
    return {"status": "accepted"}
