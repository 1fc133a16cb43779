"""docs/error-handling.md: what happens when a task fails, handlers, and the retry recipe."""

import logging
import threading
from types import SimpleNamespace

import anyio.lowlevel
import pytest

from fastapi_tasks import TaskState, get_tasks
from fastapi_tasks.testing import capture_tasks, wait_for_tasks


@pytest.mark.anyio
async def test_failures_are_logged_and_handled(load_example, serve, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="fastapi_tasks")
    example = load_example("docs_src.errors.handlers")
    async with serve(example.app) as client:
        response = await client.post("/invoices/7/send")
        assert response.json() == {"status": "queued"}  # the endpoint is unaffected
        await wait_for_tasks(example.app)
        stats = get_tasks(example.app).stats()
    assert (stats.failed, stats.succeeded) == (3, 0)

    by_task = {entry["task"]: entry for entry in example.dead_letters}
    assert set(by_task) == {"push-invoice", "push-invoice-copy"}
    assert by_task["push-invoice"]["invoice_id"] == 7
    assert by_task["push-invoice"]["thread"] == threading.current_thread().name  # loop thread
    assert by_task["push-invoice-copy"]["thread"] != threading.current_thread().name
    assert "ConnectionError" in str(by_task["push-invoice"]["error"])

    messages = [record.getMessage() for record in caplog.records]
    assert (
        "Task 'push-invoice' (function docs_src.errors.handlers.push_invoice) "
        "failed with ConnectionError"
    ) in messages
    assert any(
        "broken_handler of task 'push-invoice-unlucky' raised RuntimeError" in m for m in messages
    )
    assert "secret-key" not in caplog.text  # arguments never reach the log


@pytest.mark.anyio
async def test_calling_a_task_reraises_its_error(load_example, serve) -> None:
    example = load_example("docs_src.errors.handlers")
    async with serve(example.app) as client:
        with capture_tasks(example.app) as captured:
            await client.post("/invoices/8/send")
        with pytest.raises(ConnectionError, match="unreachable for invoice 8"):
            await captured[0].task()  # calling a task re-raises what the function raises
        await client.post("/invoices/8/send")
        await wait_for_tasks(example.app)
    assert len(example.dead_letters) == 2


@pytest.fixture
def retry_example(load_example, monkeypatch):
    example = load_example("docs_src.errors.retry")
    delays: list[float] = []

    async def instant_sleep(delay: float) -> None:
        delays.append(delay)
        await anyio.lowlevel.checkpoint()

    # Keep the backoff schedule, skip the waiting.
    monkeypatch.setattr(example, "anyio", SimpleNamespace(sleep=instant_sleep))
    example.delays = delays
    return example


@pytest.mark.anyio
async def test_retry_with_backoff_succeeds_on_the_third_attempt(
    retry_example, serve, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="webhooks")
    url = "https://hooks.example.com/a"
    async with serve(retry_example.app) as client:
        with capture_tasks(retry_example.app) as captured:
            await client.post("/events/signup", params={"url": url})
        await client.post("/events/signup", params={"url": url})
        await wait_for_tasks(retry_example.app)  # also waits for the error handler
        stats = get_tasks(retry_example.app).stats()
    assert retry_example.deliveries == [f"signup -> {url}"]
    assert retry_example.calls == {url: 3}
    assert retry_example.delays == [0.5, 1.0]  # exponential backoff
    assert "deliver-webhook succeeded on attempt 3" in caplog.text
    # The first run failed: the task stays "failed" even though a retry succeeded.
    assert (stats.failed, stats.succeeded) == (1, 0)
    assert captured[0].task.state is TaskState.PENDING  # captured, never run


@pytest.mark.anyio
async def test_retry_with_backoff_gives_up(retry_example, serve, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO, logger="webhooks")
    monkeypatch.setattr(retry_example, "MAX_ATTEMPTS", 2)
    async with serve(retry_example.app) as client:
        await client.post("/events/refund", params={"url": "https://hooks.example.com/b"})
        await wait_for_tasks(retry_example.app)
    assert retry_example.deliveries == []
    assert retry_example.delays == [0.5]
    assert "deliver-webhook gave up after 2 attempts" in caplog.text
