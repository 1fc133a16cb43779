"""Failures are logged, handled and contained; the runtime keeps working afterwards."""

import logging
import threading
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from fastapi import FastAPI

from fastapi_tasks import Task, TaskConfig, Tasks, TaskState, get_tasks
from fastapi_tasks.testing import wait_for_tasks

from .conftest import serve

pytestmark = pytest.mark.anyio

SECRET = "tok_live_SECRET_4111111111111111"


class CustomBaseError(BaseException):
    pass


async def test_a_failing_task_is_logged_and_its_handler_called(
    make_app: Any, task_logs: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    handled: list[tuple[str, str]] = []

    async def handler(task: Task[..., Any], error: Exception) -> None:
        handled.append((task.name, str(error)))

    async def send_email(address: str) -> None:
        raise ValueError("smtp down")

    @app.post("/")
    async def endpoint(tasks: Tasks) -> str:
        tasks.task(name="welcome-mail", on_error=handler).schedule(send_email, SECRET)
        return "still fine"

    async with serve(app) as client:
        assert (await client.post("/")).json() == "still fine"
        await wait_for_tasks(app)
        stats = get_tasks(app).stats()
    assert handled == [("welcome-mail", "smtp down")]
    assert (stats.failed, stats.succeeded) == (1, 0)
    # only the runtime's records: caplog also holds what other loggers emit meanwhile (such as
    # asyncio reporting an earlier test's garbage when the collector happens to run)
    [record] = [
        r for r in task_logs.records if r.name == "fastapi_tasks" and r.levelno == logging.ERROR
    ]
    assert "welcome-mail" in record.getMessage()
    assert "send_email" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ValueError
    assert SECRET not in task_logs.text


async def test_sync_tasks_and_sync_handlers(make_app: Any) -> None:
    app = make_app()
    handler_threads: list[str] = []

    def handler(task: Task[..., Any], error: Exception) -> None:
        handler_threads.append(threading.current_thread().name)

    def sync_fails() -> None:
        raise KeyError("missing")

    async with serve(app):
        task = get_tasks(app).task(on_error=handler).schedule(sync_fails)
        await task.wait()
    assert task.state is TaskState.FAILED
    assert isinstance(task.error, KeyError)
    assert handler_threads and handler_threads[0] != threading.current_thread().name


async def test_the_global_config_handler_is_used_and_can_be_overridden(make_app: Any) -> None:
    seen: list[str] = []

    async def global_handler(task: Task[..., Any], error: Exception) -> None:
        seen.append(f"global:{task.name}")

    async def local_handler(task: Task[..., Any], error: Exception) -> None:
        seen.append(f"local:{task.name}")

    app = make_app(config=TaskConfig(on_error=global_handler))

    async def fails() -> None:
        raise RuntimeError

    async with serve(app):
        scheduler = get_tasks(app)
        await scheduler.task(name="one").schedule(fails).wait()
        await scheduler.task(name="two", on_error=local_handler).schedule(fails).wait()
    assert seen == ["global:one", "local:two"]


@pytest.mark.parametrize("handler_kind", ["async", "sync"])
async def test_a_handler_that_raises_is_contained(
    make_app: Any, handler_kind: str, task_logs: pytest.LogCaptureFixture
) -> None:
    app = make_app()

    async def async_handler(task: Task[..., Any], error: Exception) -> None:
        raise RuntimeError("handler broke")

    def sync_handler(task: Task[..., Any], error: Exception) -> None:
        raise RuntimeError("handler broke")

    handler = async_handler if handler_kind == "async" else sync_handler

    async def fails() -> None:
        raise ValueError("task broke")

    async def fine() -> str:
        return "ok"

    @app.get("/")
    async def endpoint(tasks: Tasks) -> str:
        tasks.task(on_error=handler).schedule(fails)
        return "ok"

    async with serve(app) as client:
        assert (await client.get("/")).status_code == 200
        await wait_for_tasks(app)
        # the runtime survives: later requests and tasks work
        assert (await client.get("/")).status_code == 200
        later = get_tasks(app).schedule(fine)
        await later.wait()
        assert later.state is TaskState.SUCCEEDED
        await wait_for_tasks(app)
        stats = get_tasks(app).stats()
    assert (stats.failed, stats.succeeded) == (2, 1)
    assert "handler broke" in task_logs.text


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt(), CustomBaseError("odd")])
@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_base_exceptions_are_contained(
    make_app: Any, error: BaseException, kind: str, task_logs: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    handler_calls: list[BaseException] = []
    survivor_may_end = anyio.Event()

    async def handler(task: Task[..., Any], exc: Exception) -> None:
        handler_calls.append(exc)

    async def async_raises() -> None:
        raise error

    def sync_raises() -> None:
        raise error

    async with serve(app) as client:
        scheduler = get_tasks(app)
        long_running = scheduler.schedule(survivor_may_end.wait)
        await long_running.started.wait()  # running while the other one dies
        failing = scheduler.task(on_error=handler).schedule(
            async_raises if kind == "async" else sync_raises
        )
        with anyio.fail_after(5):
            await failing.wait()
            assert long_running.state is TaskState.RUNNING
            survivor_may_end.set()
            await long_running.wait()
        assert (await client.get("/docs")).status_code == 200
        after = scheduler.schedule(anyio.sleep, 0)
        await after.wait()
    assert failing.state is TaskState.FAILED
    assert failing.error is error
    assert long_running.state is TaskState.SUCCEEDED
    assert after.state is TaskState.SUCCEEDED
    assert handler_calls == []  # handlers receive Exception subclasses only
    assert type(error).__name__ in task_logs.text


async def test_the_retry_recipe_from_the_faq_works(make_app: Any) -> None:
    app = make_app()
    attempts: list[int] = []
    logger = logging.getLogger("retry-recipe")

    async def flaky_operation() -> None:
        attempts.append(len(attempts))
        if len(attempts) < 2:
            raise ConnectionError("flaky")

    delays: list[float] = []

    async def backoff(seconds: float) -> None:  # records the delay instead of waiting
        delays.append(seconds)
        await anyio.lowlevel.checkpoint()

    asyncio = SimpleNamespace(sleep=backoff)  # what the recipe below calls asyncio.sleep

    # The recipe as the reference FAQ gives it, unchanged but for the name of the task.
    async def retry_handler(task: Task[..., Any], error: Exception) -> None:
        """Retry up to 3 times with exponential backoff"""
        for attempt in range(3):
            try:
                await asyncio.sleep(2**attempt)
                await task()
                return
            except Exception:
                if attempt == 2:  # Last attempt
                    logger.error("Task failed after 3 retries")
                    raise

    @app.post("/")
    async def endpoint(tasks: Tasks) -> str:
        tasks.task(on_error=retry_handler).schedule(flaky_operation)
        return "ok"

    async with serve(app) as client:
        await client.post("/")
        await wait_for_tasks(app)
    assert attempts == [0, 1]  # failed once, the first retry (after 1 s) succeeded
    assert delays == [1]


async def test_awaiting_the_task_again_propagates_its_exception(make_app: Any) -> None:
    app = make_app()
    errors: list[BaseException] = []

    def sync_fails(n: int) -> None:
        raise ValueError(n)

    async def handler(task: Task[..., Any], error: Exception) -> None:
        try:
            await task()
        except ValueError as again:
            errors.append(again)

    async with serve(app):
        await get_tasks(app).task(on_error=handler).schedule(sync_fails, 7).wait()
    assert len(errors) == 1
    assert errors[0].args == (7,)


async def test_application_still_serves_after_many_failures(make_app: Any) -> None:
    app = make_app()

    async def fails() -> None:
        raise RuntimeError

    @app.get("/")
    async def endpoint(tasks: Tasks) -> int:
        for _ in range(20):
            tasks.schedule(fails)
        return tasks.stats().scheduled

    async with serve(app) as client:
        for _ in range(5):
            assert (await client.get("/")).status_code == 200
        await wait_for_tasks(app)
        assert get_tasks(app).stats().failed == 100


def test_logs_name_tasks_never_arguments(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="fastapi_tasks")
    from fastapi.testclient import TestClient

    from fastapi_tasks import add_tasks

    app = FastAPI()
    add_tasks(app, shutdown_timeout=0)

    async def charge(card: str, *, token: str) -> None:
        raise RuntimeError("declined")

    @app.post("/")
    async def endpoint(tasks: Tasks) -> None:
        tasks.schedule(charge, SECRET, token=SECRET)
        tasks.after_response.schedule(charge, SECRET, token=SECRET)
        raise RuntimeError("endpoint failed")  # the after-response task is discarded and logged

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/").status_code == 500
        from fastapi_tasks.testing import wait_for_tasks_sync

        wait_for_tasks_sync(client)
    assert "charge" in caplog.text
    assert SECRET not in caplog.text


# -- misuse: one exception family ----------------------------------------------------------------
def test_every_misuse_raises_a_fastapi_tasks_error_that_is_also_a_builtin(make_app: Any) -> None:
    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry
    from taskiq import InMemoryBroker

    from fastapi_tasks import (
        FastAPITasksAlreadyAddedError,
        FastAPITasksAppStartedError,
        FastAPITasksError,
        FastAPITasksNoRequestError,
        FastAPITasksUninitializedAppError,
        add_tasks,
    )
    from fastapi_tasks.prometheus import instrument
    from fastapi_tasks.taskiq import add_durable_broker
    from fastapi_tasks.testing import wait_for_tasks_sync

    app = make_app()
    cases: list[tuple[type[FastAPITasksError], type[Exception], str, Any]] = [
        (FastAPITasksAlreadyAddedError, RuntimeError, "call it once", lambda: add_tasks(app)),
        (
            FastAPITasksUninitializedAppError,
            RuntimeError,
            "call add_tasks\\(app\\)",
            lambda: get_tasks(FastAPI()),
        ),
        (
            FastAPITasksNoRequestError,
            RuntimeError,
            "use the Tasks dependency",
            lambda: get_tasks(app).after_route,
        ),
        (
            FastAPITasksUninitializedAppError,
            RuntimeError,
            "use 'with TestClient\\(app\\) as client:'",
            lambda: wait_for_tasks_sync(TestClient(app)),
        ),
    ]
    instrument(app, registry=CollectorRegistry())
    cases.append(
        (
            FastAPITasksAlreadyAddedError,
            RuntimeError,
            "instrument\\(\\) was already called",
            lambda: instrument(app, registry=CollectorRegistry()),
        )
    )
    add_durable_broker(app, InMemoryBroker())
    cases.append(
        (
            FastAPITasksAlreadyAddedError,
            RuntimeError,
            "add_durable_broker\\(\\) was already called",
            lambda: add_durable_broker(app, InMemoryBroker()),
        )
    )
    for expected, builtin, says_how_to_fix_it, call in cases:
        with pytest.raises(expected, match=says_how_to_fix_it) as caught:
            call()
        assert isinstance(caught.value, FastAPITasksError)
        assert isinstance(caught.value, builtin)

    started = FastAPI()
    with (
        TestClient(started),
        pytest.raises(FastAPITasksAppStartedError, match="before the application starts"),
    ):
        add_tasks(started)


def test_the_errors_docstring_draws_the_whole_tree() -> None:
    import fastapi_tasks.errors as errors

    assert errors.__doc__ is not None
    for name in errors.__all__:
        assert name in errors.__doc__, name
