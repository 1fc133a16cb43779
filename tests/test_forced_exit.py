"""A forced exit (a second Ctrl+C in Uvicorn, an event loop torn down): the lifespan ends
without a shutdown, no drain runs, and the shielded tasks lost that way are reported loudly,
including those the loop's teardown cancelled before the lifespan's own cancellation."""

import asyncio
import logging
from typing import Any

import pytest
from fastapi import FastAPI

from fastapi_tasks import add_tasks, get_tasks


def run_then_force_exit(app: FastAPI, *, cancel_tasks_first: bool) -> None:
    """Start ``app``'s lifespan, schedule tasks, and let ``asyncio.run()`` end without sending
    the lifespan shutdown: it cancels every task left, as it does after a second Ctrl+C."""

    async def main() -> None:
        started = asyncio.Event()
        messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await messages.put({"type": "lifespan.startup"})

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                started.set()

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        lifespan = asyncio.create_task(app(scope, messages.get, send))
        await started.wait()
        never = asyncio.Event()
        scheduler = get_tasks(app)
        for name in ("capture-payment", "write-ledger"):
            scheduler.task(name=name, shield=True).schedule(never.wait)
        scheduler.task(name="warm-cache").schedule(never.wait)
        for _ in range(3):
            await asyncio.sleep(0)  # every task has started
        if cancel_tasks_first:  # the teardown's order is arbitrary: the tasks may go first
            for task in asyncio.all_tasks():
                if task is not lifespan and task is not asyncio.current_task():
                    task.cancel()
            for _ in range(3):
                await asyncio.sleep(0)

    asyncio.run(main())


@pytest.mark.parametrize("cancel_tasks_first", [False, True], ids=["lifespan-first", "tasks-first"])
def test_a_forced_exit_names_every_lost_shielded_task(
    caplog: pytest.LogCaptureFixture, cancel_tasks_first: bool
) -> None:
    app = FastAPI()
    add_tasks(app)
    with caplog.at_level(logging.WARNING, logger="fastapi_tasks"):
        run_then_force_exit(app, cancel_tasks_first=cancel_tasks_first)
    reports = [r for r in caplog.records if "ended without a shutdown" in r.getMessage()]
    assert len(reports) == 1, [r.getMessage() for r in caplog.records]
    report = reports[0]
    assert report.levelno == logging.ERROR
    message = report.getMessage()
    assert "2 shielded task(s) lost" in message
    assert "capture-payment" in message and "write-ledger" in message
    assert get_tasks(app).stats().state == "stopped"
