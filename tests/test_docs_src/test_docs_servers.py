"""docs/servers.md: the example app, and the command lines, which the real-server matrix
(tests/test_server_matrix.py) runs for every server; here the uvicorn one serves the example
app itself, from its own directory, as the page shows."""

import signal
import subprocess
import time

import httpx
import pytest

from fastapi_tasks import get_tasks
from fastapi_tasks.testing import wait_for_tasks
from tests._servers import COMMANDS, SERVERS, RunningServer


@pytest.mark.anyio
async def test_the_confirmation_goes_out_after_the_response(load_example, serve) -> None:
    example = load_example("docs_src.servers.main")
    async with serve(example.app) as client:
        assert (await client.post("/orders/7")).json() == {"order_id": 7}
        await wait_for_tasks(example.app)
        assert get_tasks(example.app).stats().succeeded == 1
    assert example.confirmations == [7]


def test_the_matrix_runs_every_documented_command() -> None:
    assert sorted(spec.doc for spec in SERVERS) == sorted(p.stem for p in COMMANDS.glob("*.sh"))
    gunicorn = next(spec for spec in SERVERS if spec.id == "gunicorn-uvicorn-worker")
    assert gunicorn.command("main:app", 1234)[1:] == [
        *("-m", "gunicorn", "main:app", "--bind", "127.0.0.1:1234", "--workers", "2"),
        *("--worker-class", "uvicorn_worker.UvicornWorker"),
    ]


def test_the_uvicorn_command_serves_the_example(tmp_path) -> None:
    spec = next(spec for spec in SERVERS if spec.id == "uvicorn")
    reason = spec.missing()
    if reason is not None:
        pytest.skip(reason)
    server = RunningServer(spec, "main:app", tmp_path, {}, cwd=COMMANDS)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.post("/orders/7").json() == {"order_id": 7}
            deadline = time.monotonic() + 10
            while client.get("/health").json()["succeeded"] < 1:
                assert time.monotonic() < deadline, server.tail()
                time.sleep(0.01)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=20) in (0, -signal.SIGTERM)
    except subprocess.TimeoutExpired:  # pragma: no cover - reported with the server's output
        raise AssertionError(server.tail()) from None
    finally:
        server.stop()
