"""tasks.durable with taskiq's in-memory broker: the timing modes apply to the enqueue."""

from typing import Any

import anyio
import pytest
from fastapi import FastAPI, HTTPException
from taskiq import InMemoryBroker

from fastapi_tasks import FastAPITasksError, Task, Tasks, TaskState, add_tasks, get_tasks
from fastapi_tasks.taskiq import add_durable_broker
from fastapi_tasks.testing import wait_for_tasks

from .conftest import serve

pytestmark = pytest.mark.anyio

TASKIQ_ASYNCIO = pytest.mark.asyncio_only(
    "taskiq runs on asyncio only: its InMemoryBroker calls asyncio.get_running_loop()"
)


class Recorder:
    def __init__(self) -> None:
        self.broker = InMemoryBroker(await_inplace=True)
        self.jobs: list[tuple[str, int]] = []
        self.broker_running = False

        @self.broker.task
        async def send_invoice(order_id: int) -> None:
            self.jobs.append(("invoice", order_id))

        self.send_invoice = send_invoice

        async def startup(state: Any) -> None:
            self.broker_running = True

        async def shutdown(state: Any) -> None:
            self.broker_running = False

        from taskiq import TaskiqEvents

        self.broker.add_event_handler(TaskiqEvents.CLIENT_STARTUP, startup)
        self.broker.add_event_handler(TaskiqEvents.CLIENT_SHUTDOWN, shutdown)


def make(recorder: Recorder) -> FastAPI:
    app = FastAPI()
    add_tasks(app)
    add_durable_broker(app, recorder.broker)
    return app


@TASKIQ_ASYNCIO
async def test_the_three_timing_modes_apply_to_the_enqueue() -> None:
    recorder = Recorder()
    app = make(recorder)
    seen: dict[str, Any] = {}

    @app.post("/orders/{order_id}")
    async def order(order_id: int, tasks: Tasks) -> int:
        handle = tasks.durable.schedule(recorder.send_invoice, order_id)
        tasks.durable.after_route.schedule(recorder.send_invoice, order_id + 100)
        tasks.durable.after_response.schedule(recorder.send_invoice, order_id + 200)
        seen["handle"] = handle
        seen["during the endpoint"] = list(recorder.jobs)
        return order_id

    async with serve(app) as client:
        assert recorder.broker_running
        assert (await client.post("/orders/1")).json() == 1
        await wait_for_tasks(app)
        stats = get_tasks(app).stats()
    assert not recorder.broker_running  # shut down after the drain
    assert sorted(recorder.jobs) == [("invoice", 1), ("invoice", 101), ("invoice", 201)]
    assert (stats.enqueued, stats.enqueue_failed, stats.succeeded) == (3, 0, 3)
    handle: Task[..., None] = seen["handle"]
    assert handle.name == f"enqueue {recorder.send_invoice.task_name}"
    assert handle.shielded
    assert handle.state is TaskState.SUCCEEDED


async def test_nothing_is_enqueued_after_the_response_when_the_endpoint_raises() -> None:
    recorder = Recorder()
    app = make(recorder)

    @app.post("/")
    async def endpoint(tasks: Tasks) -> None:
        tasks.durable.after_response.schedule(recorder.send_invoice, 7)
        raise HTTPException(status_code=400)

    async with serve(app) as client:
        assert (await client.post("/")).status_code == 400
        await wait_for_tasks(app)
        stats = get_tasks(app).stats()
    assert recorder.jobs == []
    assert (stats.discarded, stats.enqueued) == (1, 0)


async def test_only_registered_taskiq_tasks_are_accepted() -> None:
    recorder = Recorder()
    app = make(recorder)
    other = InMemoryBroker()

    @other.task
    async def foreign(x: int) -> None: ...

    async def plain(x: int) -> None: ...

    async with serve(app):
        scheduler = get_tasks(app)
        with pytest.raises(TypeError, match=r"@broker\.task"):
            scheduler.durable.schedule(plain, 1)
        with pytest.raises(TypeError, match="not registered"):
            scheduler.durable.schedule(foreign, 1)
        assert scheduler.stats().scheduled == 0


async def test_durable_needs_a_registered_broker(make_app: Any) -> None:
    app = make_app()
    recorder = Recorder()
    async with serve(app):
        with pytest.raises(FastAPITasksError, match="add_durable_broker"):
            get_tasks(app).durable.schedule(recorder.send_invoice, 1)
    with pytest.raises(TypeError, match="AsyncBroker"):
        add_durable_broker(app, object())  # type: ignore[arg-type]
    add_durable_broker(app, recorder.broker)
    with pytest.raises(FastAPITasksError, match="already"):
        add_durable_broker(app, recorder.broker)


async def test_a_broker_that_is_down_fails_the_enqueue_not_the_response(
    task_logs: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    app = make(recorder)
    handled: list[str] = []

    async def broken_kick(message: Any) -> None:
        raise ConnectionError("redis is down")

    recorder.broker.kick = broken_kick  # type: ignore[method-assign]

    async def on_error(task: Task[..., Any], error: Exception) -> None:
        handled.append(f"{task.name}: {error}")

    @app.post("/")
    async def endpoint(tasks: Tasks) -> str:
        tasks.durable.task(on_error=on_error).after_response.schedule(recorder.send_invoice, 1)
        return "accepted"

    async with serve(app) as client:
        assert (await client.post("/")).json() == "accepted"
        await wait_for_tasks(app)
        stats = get_tasks(app).stats()
    # taskiq wraps the broker's error in SendTaskError; the log keeps the cause
    assert handled == [f"enqueue {recorder.send_invoice.task_name}: Cannot send task to the queue"]
    assert (stats.enqueue_failed, stats.enqueued, stats.failed) == (1, 0, 1)
    assert "redis is down" in task_logs.text


@TASKIQ_ASYNCIO
async def test_an_enqueue_in_flight_at_shutdown_completes() -> None:
    recorder = Recorder()
    app = make(recorder)
    kick_started = anyio.Event()
    original_kick = recorder.broker.kick

    async def slow_kick(message: Any) -> None:
        kick_started.set()
        while get_tasks(app).stats().state != "draining":  # still in flight at the shutdown
            await anyio.sleep(0.001)
        await original_kick(message)

    recorder.broker.kick = slow_kick  # type: ignore[method-assign]
    async with serve(app):
        get_tasks(app).durable.schedule(recorder.send_invoice, 9)
        await kick_started.wait()
    assert recorder.jobs == [("invoice", 9)]
    assert get_tasks(app).stats().enqueued == 1
