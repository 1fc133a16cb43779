"""The Prometheus pending gauge for tasks that end without ever starting."""

import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest
from prometheus_client import CollectorRegistry

from fastapi_tasks import TaskState, get_tasks
from fastapi_tasks.prometheus import instrument

from .conftest import serve

pytestmark = pytest.mark.anyio


def gauge(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    return 0.0 if value is None else value


async def test_tasks_cancelled_before_they_start_leave_the_pending_gauge(make_app: Any) -> None:
    app = make_app(thread_limit=1)
    registry = CollectorRegistry()
    instrument(app, registry=registry)
    entered = threading.Event()
    never = threading.Event()

    def blocker() -> None:
        entered.set()
        while not never.wait(0.005):
            anyio.from_thread.check_cancelled()

    async with serve(app):
        scheduler = get_tasks(app)
        scheduler.schedule(blocker)
        await anyio.to_thread.run_sync(entered.wait, 5)
        waiting = [scheduler.schedule(print, i) for i in range(3)]  # wait for the thread
        assert gauge(registry, "fastapi_tasks_pending") == 3
        assert gauge(registry, "fastapi_tasks_running") == 1
    # the drain cancelled the three before they started, and the blocker while it ran
    assert [task.state for task in waiting] == [TaskState.CANCELLED] * 3
    assert not any(task.started.is_set() for task in waiting)
    assert gauge(registry, "fastapi_tasks_pending") == 0
    assert gauge(registry, "fastapi_tasks_running") == 0
