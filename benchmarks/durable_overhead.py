"""Per-request cost of a durable enqueue (taskiq + a real redis-server) against an in-process
schedule of the same job, in-process ASGI, lifespan running. Prints a Markdown table.

    python benchmarks/durable_overhead.py [--requests 2000] [--rounds 5] [--write]

Needs redis-server on PATH (Debian package redis-server) and the test extra installed. The
script starts its own redis-server on a free loopback port and stops it at the end.
"""

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from taskiq_redis import ListQueueBroker

from fastapi_tasks import Tasks, add_tasks, get_tasks
from fastapi_tasks.taskiq import add_durable_broker
from fastapi_tasks.testing import wait_for_tasks


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"redis://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not start")


VARIANTS = {
    "bare": "bare endpoint",
    "in-process": "in-process after-response task",
    "durable": "durable after-response enqueue",
    "durable-confirmed": "durable enqueue awaited in the endpoint",
}


def build_app(redis_url: str) -> FastAPI:
    broker = ListQueueBroker(redis_url)

    @broker.task
    async def send_receipt(order_id: int) -> None: ...

    async def send_receipt_here(order_id: int) -> None: ...

    app = FastAPI()
    add_tasks(app)
    add_durable_broker(app, broker)

    @app.post("/bare/{order_id}")
    async def bare(order_id: int) -> int:
        return order_id

    @app.post("/in-process/{order_id}")
    async def in_process(order_id: int, tasks: Tasks) -> int:
        tasks.after_response.schedule(send_receipt_here, order_id)
        return order_id

    @app.post("/durable/{order_id}")
    async def durable(order_id: int, tasks: Tasks) -> int:
        tasks.durable.after_response.schedule(send_receipt, order_id)
        return order_id

    @app.post("/durable-confirmed/{order_id}")
    async def durable_confirmed(order_id: int, tasks: Tasks) -> int:
        # The client gets its answer only once the job is in Redis.
        await tasks.durable.schedule(send_receipt, order_id).wait()
        return order_id

    return app


async def measure(client: httpx.AsyncClient, app: FastAPI, path: str, requests: int) -> float:
    """Microseconds per request, including the task it scheduled (waited for at the end)."""
    started = time.perf_counter()
    for i in range(requests):
        await client.post(f"/{path}/{i}")
        await anyio.sleep(0)  # a real server yields to the loop between requests
    await wait_for_tasks(app, timeout=60)
    return (time.perf_counter() - started) / requests * 1e6


async def main(requests: int, rounds: int, redis_url: str) -> dict[str, float]:
    app = build_app(redis_url)
    samples: dict[str, list[float]] = {path: [] for path in VARIANTS}
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for path in samples:  # warm-up
                await measure(client, app, path, 200)
            order = list(samples)
            for round_no in range(rounds):
                # Interleaved, rotating order: each variant sees the same machine conditions.
                shift = round_no % len(order)
                for path in order[shift:] + order[:shift]:
                    samples[path].append(await measure(client, app, path, requests))
            stats = get_tasks(app).stats()
    assert stats.enqueue_failed == 0, stats
    return {path: statistics.median(values) for path, values in samples.items()}


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--write", action="store_true", help="write benchmarks/durable_results.md (for the docs)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        proc, url = start_redis(Path(workdir))
        try:
            result: dict[str, Any] = anyio.run(main, args.requests, args.rounds, url)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    base = result["bare"]
    lines = [
        "| endpoint | us/request (median) | over a bare endpoint |",
        "| --- | ---: | ---: |",
    ]
    for path, label in VARIANTS.items():
        lines.append(f"| {label} | {result[path]:.1f} | +{result[path] - base:.1f} us |")
    ratio = (result["durable"] - base) / (result["in-process"] - base)
    lines.append("")
    lines.append(f"Added cost per request, durable / in-process: {ratio:.1f}x")
    table = "\n".join(lines)
    print(table)
    if args.write:
        out = Path(__file__).with_name("durable_results.md")
        header = (
            f"<!-- python benchmarks/durable_overhead.py --requests {args.requests} "
            f"--rounds {args.rounds} --write; {platform.python_version()}, "
            f"{os.cpu_count()} cores, {redis_version()} -->\n"
        )
        out.write_text(header + table + "\n")
        print(f"\nwrote {out}")


def redis_version() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        return "redis-server ?"
    text = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    return " ".join(text.split()[:3])


if __name__ == "__main__":
    run()
