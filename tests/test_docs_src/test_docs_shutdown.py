"""docs/shutdown.md: shielded tasks, cancellation, cooperative sync tasks, shutdown_timeout and
the deployment timing budget."""

import logging
import re
import threading
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from fastapi_tasks import FastAPITasksShutdownError, get_tasks

DOCS_SRC = Path(__file__).resolve().parents[2] / "docs_src"


@pytest.fixture
def shutdown_example(load_example, monkeypatch):
    example = load_example("docs_src.shutdown.shielded")
    example.ledgers = []
    example.payment_started = anyio.Event()
    example.release_payment = anyio.Event()
    example.mail_started = anyio.Event()
    example.mail_cancelled = anyio.Event()

    class RecordedLedger(example.Ledger):
        def __init__(self) -> None:
            super().__init__()
            example.ledgers.append(self)

    class GatedGateway:
        async def capture(self, order_id: int) -> str:
            example.payment_started.set()
            await example.release_payment.wait()
            return f"payment-{order_id}"

    class HangingMailer:
        async def send(self, to: str, body: str) -> None:
            example.mail_started.set()
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                example.mail_cancelled.set()
                raise

    monkeypatch.setattr(example, "Ledger", RecordedLedger)
    monkeypatch.setattr(example, "gateway", GatedGateway())
    monkeypatch.setattr(example, "mailer", HangingMailer())
    return example


@pytest.mark.anyio
async def test_shielded_task_finishes_unshielded_is_cancelled(
    shutdown_example, serve_in_background
) -> None:
    example = shutdown_example
    app = example.create_app()
    async with serve_in_background(app) as server:
        response = await server.client.post("/orders/1", params={"email": "ada@example.com"})
        assert response.json() == {"order_id": 1}
        with anyio.fail_after(5):
            await example.payment_started.wait()
            await example.mail_started.wait()

        server.begin_shutdown()
        await server.wait_until_draining()
        with anyio.fail_after(5):
            await example.mail_cancelled.wait()  # unshielded: cancelled at once
        with pytest.raises(FastAPITasksShutdownError, match="shutting down"):
            get_tasks(app).schedule(example.send_confirmation, "late@example.com", 2)
        [ledger] = example.ledgers
        assert ledger.rows == []  # the payment is still in flight...

        example.release_payment.set()  # ...and the drain waits for it
        await server.wait_stopped()

    assert ledger.rows == ["order 1 paid: payment-1"]
    assert ledger.closed  # the app's teardown ran after the shielded task
    stats = get_tasks(app).stats()
    assert (stats.state, stats.succeeded, stats.cancelled, stats.rejected) == (
        "stopped",
        1,
        1,
        1,
    )


@pytest.mark.anyio
async def test_sync_task_stops_at_check_cancelled(
    shutdown_example, serve_in_background, monkeypatch
) -> None:
    example = shutdown_example
    entered = threading.Event()
    proceed = threading.Event()
    real_write_batch = example.write_batch

    def slow_first_batch(batch: list[str]) -> None:
        if not entered.is_set():
            entered.set()
            proceed.wait(10)
        real_write_batch(batch)

    monkeypatch.setattr(example, "write_batch", slow_first_batch)
    app = example.create_app()
    async with serve_in_background(app) as server:
        batches = [["a", "b"], ["c"], ["d"]]
        assert (await server.client.post("/exports", json=batches)).json() == {"batches": 3}
        await anyio.to_thread.run_sync(entered.wait, 10)

        server.begin_shutdown()
        await server.wait_until_draining()
        assert get_tasks(app).stats().running == 1  # a thread cannot be interrupted
        proceed.set()  # the batch finishes; check_cancelled() then stops the loop
        await server.wait_stopped()

    assert example.exported == ["a", "b"]
    stats = get_tasks(app).stats()
    assert (stats.cancelled, stats.abandoned, stats.succeeded) == (1, 0, 0)


@pytest.mark.anyio
async def test_shutdown_timeout_abandons_stragglers(
    shutdown_example, serve_in_background, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="fastapi_tasks")
    example = shutdown_example
    app = example.create_app(shutdown_timeout=0.2)  # real seconds: this test is about time
    async with serve_in_background(app) as server:
        await server.client.post("/orders/3", params={"email": "ada@example.com"})
        with anyio.fail_after(5):
            await example.payment_started.wait()
        server.begin_shutdown()  # the payment never completes
        await server.wait_stopped()

    assert example.ledgers[0].rows == []
    stats = get_tasks(app).stats()
    assert (stats.abandoned, stats.running, stats.pending) == (1, 0, 0)
    assert "shutdown_timeout=0.2s reached; abandoning capture-payment" in caplog.text
    assert re.search(r"drained in [\d.]+s: 0 completed, \d cancelled, 1 abandoned", caplog.text)


def _numbers(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, pattern
    return int(match.group(1))


def test_gunicorn_budget_adds_up(load_example) -> None:
    conf = load_example("docs_src.shutdown.gunicorn_conf")
    assert conf.worker_class == "uvicorn_worker.UvicornWorker"
    assert conf.graceful_timeout > conf.REQUEST_DRAIN + conf.SHUTDOWN_TIMEOUT


def test_kubernetes_budget_adds_up() -> None:
    manifest = (DOCS_SRC / "shutdown" / "k8s-deployment.yaml").read_text()
    grace = _numbers(r"terminationGracePeriodSeconds: (\d+)", manifest)
    pre_stop = _numbers(r'command: \["sleep", "(\d+)"\]', manifest)
    request_drain = _numbers(r"--timeout-graceful-shutdown=(\d+)", manifest)
    tasks_drain = _numbers(r'TASKS_SHUTDOWN_TIMEOUT.*\n\s+value: "(\d+)"', manifest)
    assert grace > pre_stop + request_drain + tasks_drain
