"""docs/durable.md: in-process and durable scheduling side by side."""

import pytest

from fastapi_tasks import get_tasks
from fastapi_tasks.testing import wait_for_tasks


@pytest.mark.anyio
async def test_the_durable_example(load_example, serve) -> None:
    example = load_example("docs_src.durable.app")
    async with serve(example.app) as client:
        assert (await client.post("/orders/5")).json() == {"order_id": 5}
        await wait_for_tasks(example.app)
        await example.broker.wait_all()  # the in-memory broker runs jobs in this process
        stats = get_tasks(example.app).stats()
    assert example.charged == [5]
    assert (stats.enqueued, stats.succeeded) == (1, 2)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.anyio
async def test_redis_down_fire_and_forget_answers_and_keeps_the_job_in_the_outbox(
    load_example, serve, monkeypatch
) -> None:
    """The real Redis broker of docs_src/durable/broker.py, pointed at a port where nothing
    listens: the fire-and-forget endpoint answers 200, the awaited one 503, and both jobs are
    saved by the on_error handler."""
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{_closed_port()}")
    load_example("docs_src.durable.broker")
    example = load_example("docs_src.durable.redis_app")
    async with serve(example.app) as client:
        assert (await client.post("/orders/1")).status_code == 200
        await wait_for_tasks(example.app)
        confirmed = await client.post("/orders/2/confirmed")
        stats = get_tasks(example.app).stats()
    assert confirmed.status_code == 503
    assert [entry["args"] for entry in example.outbox] == [(1,), (2,)]
    assert all(
        entry["task"] == "enqueue docs_src.durable.broker:charge_card" for entry in example.outbox
    )
    assert (stats.enqueued, stats.enqueue_failed) == (0, 2)


def test_the_worker_command_names_the_shared_module() -> None:
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "durable.md").read_text()
    assert "taskiq worker docs_src.durable.broker:broker" in page
