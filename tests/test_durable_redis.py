"""Integration: FastAPI endpoint -> tasks.durable -> real redis-server -> real taskiq worker
process -> side effect on disk. Starts and stops its own redis-server and worker."""

import importlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from fastapi_tasks import Tasks, add_tasks, get_tasks
from fastapi_tasks.taskiq import add_durable_broker
from fastapi_tasks.testing import wait_for_tasks

from .conftest import serve

ROOT = Path(__file__).resolve().parent.parent
REDIS = shutil.which("redis-server")

pytestmark = pytest.mark.skipif(
    REDIS is None,
    reason="redis-server is not installed (Debian package redis-server; .ci/run installs it)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    assert REDIS is not None
    port = free_port()
    proc = subprocess.Popen(
        [
            REDIS,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            assert proc.poll() is None, "redis-server exited"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.mark.anyio
@pytest.mark.asyncio_only("taskiq and its redis broker run on asyncio only")
async def test_a_real_worker_runs_what_an_endpoint_enqueued(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FT_REDIS_URL", redis_url)
    monkeypatch.setenv("FT_OUT", str(tmp_path))
    sys.modules.pop("tests.durable_app", None)
    durable_app = importlib.import_module("tests.durable_app")
    worker_log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "taskiq", "worker", "tests.durable_app:broker", "--workers", "1"],
        cwd=ROOT,
        env={**os.environ},
        stdout=worker_log,
        stderr=subprocess.STDOUT,
    )
    try:
        app = FastAPI()
        add_tasks(app)
        add_durable_broker(app, durable_app.broker)

        @app.post("/orders/{order_id}")
        async def order(order_id: int, tasks: Tasks) -> int:
            tasks.durable.after_response.schedule(durable_app.write_receipt, order_id)
            return order_id

        async with serve(app) as client:
            for order_id in (1, 2, 3):
                assert (await client.post(f"/orders/{order_id}")).json() == order_id
            await wait_for_tasks(app)
            assert get_tasks(app).stats().enqueued == 3
        receipts = [tmp_path / f"receipt-{i}" for i in (1, 2, 3)]
        deadline = time.monotonic() + 30
        while not all(path.exists() for path in receipts):
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.05)
    finally:
        stop(worker)
        worker_log.close()
