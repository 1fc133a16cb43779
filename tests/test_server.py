"""Reliability against a real server: uvicorn in a subprocess on 127.0.0.1, real HTTP, SIGTERM,
and assertions on what reached the disk. Each test starts and stops its own server and kills
only the process it started."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(
        self,
        out: Path,
        env: dict[str, str],
        workers: int = 1,
        app: str = "tests.server_app:app",
    ) -> None:
        self.out = out
        self.port = free_port()
        self.log = out / f"server-{self.port}.log"
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                app,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "info",
                *(["--workers", str(workers)] if workers > 1 else []),
            ],
            cwd=ROOT,
            env={**os.environ, "FT_OUT": str(out), **env},
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log.read_text()}")
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"server not ready:\n{self.log.read_text()}")

    def terminate(self, timeout: float = 20) -> float:
        """SIGTERM, wait for the exit, return the seconds it took."""
        self.client.close()
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        self._log_file.close()
        return time.monotonic() - started

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log_file.close()

    def exited_cleanly(self) -> bool:
        # recent uvicorn re-raises the signal once it has shut down: -SIGTERM is a clean exit
        return self.proc.returncode in (0, -signal.SIGTERM) and (
            "Finished server process" in self.output()
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    started: list[Server] = []

    def start(workers: int = 1, **env: str) -> Server:
        srv = Server(tmp_path, env, workers)
        started.append(srv)
        srv.wait_ready()
        return srv

    yield start
    for srv in started:
        srv.stop()


def test_sigterm_drains_shielded_work_and_drops_the_rest(server: Any, tmp_path: Path) -> None:
    srv = server()
    for kind in ("async", "sync"):
        for i in range(3):
            srv.client.post(
                "/schedule",
                params={"name": f"shielded-{kind}-{i}", "kind": kind, "seconds": 0.3, "shield": 1},
            )
        long_kind = "sync-coop" if kind == "sync" else kind  # a plain sync one would be waited for
        srv.client.post(
            "/schedule", params={"name": f"long-{kind}", "kind": long_kind, "seconds": 30}
        )
    before = srv.client.get("/health").json()
    assert before["running"] == 8
    srv.terminate()
    assert srv.exited_cleanly()
    written = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".log"))
    assert written == [f"shielded-{kind}-{i}" for kind in ("async", "sync") for i in range(3)]
    output = srv.output()
    assert "drained in" in output


def test_shutdown_timeout_bounds_the_drain_and_names_stragglers(
    server: Any, tmp_path: Path
) -> None:
    srv = server(FT_SHUTDOWN_TIMEOUT="0.5")
    srv.client.post(
        "/schedule", params={"name": "endless-report", "seconds": 60, "shield": 1, "kind": "async"}
    )
    srv.client.post("/schedule", params={"name": "quick-report", "seconds": 0.1, "shield": 1})
    took = srv.terminate(timeout=15)
    output = srv.output()
    assert took < 15  # bounded (the precise figure is in benchmarks/, not a test assertion)
    assert "abandoning endless-report" in output
    assert "1 abandoned" in output
    assert (tmp_path / "quick-report").exists()
    assert not (tmp_path / "endless-report").exists()


def test_failures_leave_the_server_serving_and_shutting_down_cleanly(server: Any) -> None:
    srv = server()
    for kind in ("value", "handler", "base", "exit"):
        assert srv.client.post("/fail", params={"kind": kind}).json() == "ok"
    # the server still serves and still runs tasks
    assert srv.client.get("/ping").json() == "pong"
    srv.client.post("/schedule", params={"name": "after-failures", "seconds": 0})
    deadline = time.monotonic() + 10
    while srv.client.get("/health").json()["failed"] < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    health = srv.client.get("/health").json()
    assert (health["failed"], health["state"]) == (4, "running")
    srv.terminate()
    assert srv.exited_cleanly()
    output = srv.output()
    assert "CustomBaseError" in output
    assert "SystemExit" in output
    assert "the handler failed too" in output


def test_sync_tasks_do_not_starve_def_endpoints(server: Any) -> None:
    srv = server(FT_THREAD_LIMIT="2")
    for i in range(50):
        srv.client.post(
            # long enough never to end during the checks; shutdown stops them between steps
            "/schedule",
            params={"name": f"slow-{i}", "kind": "sync-coop", "seconds": 60, "wait": 0},
        )
    # the tasks were scheduled without waiting for them to start: wait for that state
    deadline = time.monotonic() + 10
    health = srv.client.get("/health").json()
    while health["threads_busy"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
        health = srv.client.get("/health").json()
    assert (health["threads_busy"], health["running"], health["pending"]) == (2, 2, 48)
    for _ in range(20):
        assert srv.client.get("/ping", timeout=5).json() == "pong"
    srv.terminate()  # cancels the two running tasks (they cooperate), drops the 48 queued
    assert srv.exited_cleanly()


def test_bad_input_is_a_clear_error_at_the_call(server: Any, tmp_path: Path) -> None:
    srv = server()
    assert srv.client.post("/bad-input").json().startswith("TypeError: schedule() needs")
    assert srv.client.get("/health").json()["scheduled"] == 0
    srv.terminate()
    for env, message in [
        ({"FT_THREAD_LIMIT": "0"}, "thread_limit must be >= 1"),
        ({"FT_THREAD_LIMIT": "1.5"}, "thread_limit must be an int"),
        ({"FT_SHUTDOWN_TIMEOUT": "-1"}, "shutdown_timeout must be >= 0"),
    ]:
        bad = Server(tmp_path, env)
        try:
            bad.proc.wait(timeout=20)
            assert bad.proc.returncode != 0
            assert message in bad.output()
        finally:
            bad.stop()


def test_two_workers_each_drain_their_shielded_tasks_and_share_metrics(
    server: Any, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    srv = server(workers=2, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    pids: dict[str, int] = {}
    scheduled = 0
    # a new connection per request lets the kernel spread requests over both workers
    with httpx.Client(
        base_url=srv.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)
    ) as client:
        while len(pids) < 2 or scheduled < 10:
            assert scheduled < 400, f"requests never reached both workers: {pids}"
            body = client.post(
                "/schedule",
                params={"name": f"shielded-{scheduled}", "seconds": 0.5, "shield": 1},
            ).json()
            pids[body["pid"]] = pids.get(body["pid"], 0) + 1
            scheduled += 1
        health_pids = {client.get("/health").json()["pid"] for _ in range(20)}
        metrics = client.get("/metrics/").text
    assert health_pids <= {int(pid) for pid in pids}
    assert f"fastapi_tasks_scheduled_total {float(scheduled)}" in metrics  # both workers summed
    srv.terminate(timeout=30)
    written = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("shielded-"))
    assert written == sorted(f"shielded-{i}" for i in range(scheduled))
