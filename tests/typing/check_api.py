"""Checked by ``mypy`` (see setup.cfg), never run: pins how the public API types for users."""

from typing import Any

from typing_extensions import assert_type

from fastapi_tasks import Task, TaskConfig, TaskScheduler, TaskStats


async def send_email(address: str, *, retries: int = 3) -> bool:
    return True


def resize(path: str, width: int) -> None:
    pass


async def on_error(task: Task[..., Any], error: Exception) -> None:
    pass


def on_error_sync(task: Task[..., Any], error: Exception) -> None:
    pass


def check(tasks: TaskScheduler) -> None:
    email_task: Task[..., bool] = tasks.schedule(send_email, "a@example.com", retries=1)
    resize_task: Task[..., None] = tasks.after_route.schedule(resize, "img.png", width=10)
    wrong_result: Task[..., int] = tasks.schedule(resize, "a.png", 1)  # type: ignore[call-overload]
    assert_type(email_task.config, TaskConfig)
    assert_type(resize_task.error, BaseException | None)
    assert_type(tasks.after_response, TaskScheduler)
    assert_type(tasks.task(name="x", shield=True, on_error=on_error), TaskScheduler)
    tasks.task(on_error=on_error_sync)
    assert_type(tasks.stats(), TaskStats)
    assert_type(TaskConfig(shield=True).merge(TaskConfig(name="n")), TaskConfig)

    tasks.schedule(resize, "img.png", "wide")  # type: ignore[call-overload]
    tasks.schedule(send_email)  # type: ignore[call-overload]
    tasks.schedule(send_email, "a@example.com", retry=1)  # type: ignore[call-arg]
    tasks.task(shield="yes")  # type: ignore[arg-type]


# -- the AnyTask alias and the typed app-level entry points ---------------------------------------
from fastapi import FastAPI, Request  # noqa: E402

from fastapi_tasks import AnyTask, ErrorHandler, get_tasks  # noqa: E402
from fastapi_tasks.prometheus import TaskMetrics, instrument  # noqa: E402


async def handler_with_alias(task: AnyTask, error: Exception) -> None:
    pass


def check_entry_points(app: FastAPI, request: Request) -> None:
    handler: ErrorHandler = handler_with_alias
    assert_type(get_tasks(app), TaskScheduler)
    assert_type(get_tasks(request), TaskScheduler)
    get_tasks("not an app")  # type: ignore[arg-type]
    assert_type(instrument(app), TaskMetrics)
    instrument(object())  # type: ignore[arg-type]
    TaskScheduler(object())  # type: ignore[call-arg]
    get_tasks(app).task(on_error=handler)
