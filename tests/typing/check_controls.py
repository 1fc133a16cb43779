"""Checked by ``mypy`` (see setup.cfg), never run: how the task controls type for users."""

from typing_extensions import assert_type

from fastapi_tasks import Retry, Task, TaskConfig, TaskScheduler


async def fetch(url: str) -> bytes:
    return b""


def render(path: str) -> str:
    return path


async def check(tasks: TaskScheduler) -> None:
    policy = Retry(attempts=5, backoff=0.5, on=(ConnectionError, TimeoutError))
    limited = tasks.task(name="fetch", timeout=10, retry=policy, limit=5)
    assert_type(limited, TaskScheduler)
    fetched: Task[..., bytes] = limited.schedule(fetch, "https://example.com")
    rendered: Task[..., str] = tasks.task(timeout=2.5).schedule(render, "a.png")
    assert_type(fetched.result(), bytes)
    assert_type(rendered.result(), str)
    assert_type(fetched.cancel(), bool)
    assert_type(fetched.attempts, int)
    await fetched.wait(timeout=1.0)
    assert_type(policy.delay(2), float)
    TaskConfig(timeout=1, retry=Retry(), limit=2)
    TaskConfig(retry=3)  # type: ignore[arg-type]
    tasks.task(limit="5")  # type: ignore[arg-type]
