"""docs_src/streaming/export.py under a real uvicorn: a client that reads 100 bytes and closes
the connection gets its after-response task discarded, and the export stops."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_export_stops_when_the_client_goes_away(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "docs_src.streaming.export:app",
                *("--host", "127.0.0.1", "--port", str(port), "--log-level", "info"),
            ],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.05)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET /exports/big.csv?rows=100000000 HTTP/1.1\r\nHost: x\r\n\r\n")
                received = b""
                while len(received) < 100:
                    chunk = sock.recv(100 - len(received))
                    assert chunk
                    received += chunk
            deadline = time.monotonic() + 20
            while "discarded 1 after-response task" not in log.read_text():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:  # pragma: no cover
                    proc.kill()
                    proc.wait(timeout=10)
    output = log.read_text()
    assert output.count("socket.send() raised exception") < 10
