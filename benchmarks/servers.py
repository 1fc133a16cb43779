"""Scenarios that need a real server: isolation of ``def`` endpoints (2) and shutdown (4).

Each server is ``python -m uvicorn server_app:app`` on 127.0.0.1 and a free port, started by
this process (in its own session, so a Ctrl-C here does not reach it), polled until ready and
stopped with SIGTERM (SIGKILL only if it has not exited after a grace period). Only the PIDs
started here are ever signalled. Every request loop is bounded in count and in time.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from harness import Measurement, Series, interleave_sync, percentile

__all__ = ["Server", "ServerSpec", "isolation", "shutdown"]

BENCH_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ServerSpec:
    """Which interpreter serves which variant of ``server_app``."""

    label: str  # "ours", "original" or "naive"
    python: str
    variant: str  # BENCH_VARIANT: "lib" or "naive"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Block until ``proc`` exits (``True``) or ``timeout`` passes (``False``), noticing the
    exit at once through a pidfd where the OS has them, else by polling every millisecond."""
    if proc.poll() is not None:
        return True
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            fd = pidfd_open(proc.pid)
        except OSError:
            fd = None
        if fd is not None:
            try:
                select.select([fd], [], [], timeout)  # readable once the process has exited
            finally:
                os.close(fd)
            return proc.poll() is not None
    deadline = time.perf_counter() + timeout
    while proc.poll() is None:
        if time.perf_counter() > deadline:
            return False
        time.sleep(0.001)
    return True


class Server:
    """One uvicorn process serving ``server_app``; use it as a context manager."""

    def __init__(self, spec: ServerSpec, *, side_effects: Path | None = None) -> None:
        self.spec = spec
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.side_effects = side_effects
        fd, log_path = tempfile.mkstemp(prefix=f"bench-{spec.label}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_seconds: float | None = None
        #: ``time.time()`` when the process was seen to exit.
        self.exited_at: float | None = None

    def __enter__(self) -> Server:
        self.start()
        self.wait_ready()
        return self

    def start(self) -> None:
        """Start the process without waiting (several servers can boot side by side)."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["BENCH_VARIANT"] = self.spec.variant
        env["BENCH_SIDE_EFFECTS"] = str(self.side_effects or "")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        command = [
            self.spec.python,
            "-m",
            "uvicorn",
            "server_app:app",
            "--app-dir",
            str(BENCH_DIR),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        # cwd=BENCH_DIR: `-m` puts the cwd on sys.path, and this folder has no fastapi_tasks,
        # so the interpreter imports its own installed copy.
        with open(self.log_path, "wb") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                command,
                cwd=BENCH_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, *, timeout: float = 30.0) -> None:
        """Poll ``/info`` until it answers; kill the server and raise if it never does."""
        try:
            self._wait_ready(timeout=timeout)
        except BaseException:
            self.kill()
            raise

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self.log_path.unlink(missing_ok=True)

    def _wait_ready(self, *, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.perf_counter() + timeout
        with httpx.Client(base_url=self.base_url, timeout=1.0) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.spec.label} server exited:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/info").status_code == 200:
                        return
                time.sleep(0.05)
        raise RuntimeError(f"{self.spec.label} server not ready in {timeout}s")

    def info(self) -> dict[str, str]:
        with httpx.Client(base_url=self.base_url, timeout=5.0) as client:
            data: dict[str, str] = client.get("/info").json()
            return data

    def stop(self, *, grace: float = 20.0) -> float:
        """SIGTERM; SIGKILL if still alive after ``grace`` s. Return seconds to exit."""
        assert self.proc is not None
        start = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        if not wait_exit(self.proc, grace):
            print(f"  {self.spec.label} server ignored SIGTERM; killing it", file=sys.stderr)
            self.kill()
        self.exit_seconds = time.perf_counter() - start
        self.exited_at = time.time()
        self.proc.wait()
        return self.exit_seconds

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as file:
            return "".join(file.readlines()[-lines:])


# ------------------------------------------------------------------------ scenario 2
@dataclass(frozen=True)
class IsolationSizes:
    pings: int  # sequential requests per phase
    load_tasks: int
    load_seconds: float  # each load task sleeps this long
    threads: int = 40

    @property
    def window(self) -> float:
        """How long the load keeps all of its threads busy."""
        return self.load_tasks * self.load_seconds / self.threads


def _ping_phase(
    client: httpx.Client, count: int, interval: float, until: float | None = None
) -> list[float]:
    """Up to ``count`` sequential pings, one every ``interval`` s (or back to back when a
    ping takes longer); stops early at ``until``. Returns latencies in seconds."""
    latencies: list[float] = []
    start = time.perf_counter()
    for i in range(count):
        now = time.perf_counter()
        if until is not None and now >= until:
            break
        due = start + i * interval
        if due > now:
            time.sleep(due - now)
        sent = time.perf_counter()
        response = client.get("/ping")
        latencies.append(time.perf_counter() - sent)
        if response.status_code != 200:
            raise RuntimeError(f"/ping answered {response.status_code}")
    return latencies


def _wait_load_done(client: httpx.Client, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while client.get("/progress").json()["sync_outstanding"] > 0:
        if time.perf_counter() > deadline:
            raise RuntimeError("sync load did not finish in time")
        time.sleep(0.05)


def isolation(
    specs: list[ServerSpec],
    sizes: IsolationSizes,
    rounds: int,
    log: Callable[[str], None],
) -> dict[str, Series]:
    """p50/p99 latency of a ``def`` endpoint, idle and while ``load_tasks`` blocking sync tasks
    are queued as background work; one server per spec, all measured round-robin."""
    interval = sizes.window / sizes.pings
    with contextlib.ExitStack() as stack:
        clients: dict[str, httpx.Client] = {}
        booting = []
        for spec in specs:
            server = Server(spec)
            stack.callback(server.__exit__)
            server.start()
            booting.append(server)
        for server in booting:
            server.wait_ready()
            client = stack.enter_context(httpx.Client(base_url=server.base_url, timeout=60.0))
            _ping_phase(client, 30, 0.0)  # warm up: connection, thread pool, code paths
            clients[server.spec.label] = client

        def measure(client: httpx.Client) -> Callable[[], Measurement]:
            def run() -> Measurement:
                idle = _ping_phase(client, sizes.pings, interval)
                client.post(
                    "/sync-load", params={"n": sizes.load_tasks, "seconds": sizes.load_seconds}
                )
                load_start = time.perf_counter()
                loaded = _ping_phase(client, sizes.pings, interval, until=load_start + sizes.window)
                busy = client.get("/progress").json()["sync_outstanding"]
                _wait_load_done(client, timeout=sizes.window * 10 + 30)
                return {
                    "idle_p50": percentile(idle, 50),
                    "idle_p99": percentile(idle, 99),
                    "load_p50": percentile(loaded, 50),
                    "load_p99": percentile(loaded, 99),
                    "load_samples": len(loaded),
                    "load_outstanding_after": busy,
                }

            return run

        variants = {label: measure(client) for label, client in clients.items()}
        log(
            f"isolation: {sizes.pings} pings idle + under {sizes.load_tasks} x "
            f"sleep({sizes.load_seconds}) for {len(specs)} servers"
        )
        series = interleave_sync(variants, rounds=rounds, log=log)
    return _split(series)


def _split(series: Series) -> dict[str, Series]:
    """``{"ours:idle_p99": [...]}`` -> ``{"ours": {"idle_p99": [...]}}``."""
    out: dict[str, Series] = {}
    for key, values in series.items():
        label, _, metric = key.partition(":")
        out.setdefault(label, {})[metric] = values
    return out


# ------------------------------------------------------------------------ scenario 4
@dataclass(frozen=True)
class ShutdownSizes:
    async_tasks: int = 10_000
    shielded_tasks: int = 5
    shielded_seconds: float = 1.0


def _shutdown_idle(spec: ServerSpec) -> Measurement:
    with Server(spec) as server:
        server.info()
        return server.stop()


def _shutdown_unshielded(spec: ServerSpec, sizes: ShutdownSizes) -> Measurement:
    with Server(spec) as server:
        with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
            client.post("/async-sleepers", params={"n": sizes.async_tasks})
            started = _wait_started(client, sizes.async_tasks)
        return {"exit_s": server.stop(), "started": started}


def _wait_started(client: httpx.Client, n: int, *, stall: float = 2.0) -> int:
    """Wait until ``n`` sleepers run, or until their number stops growing for ``stall`` s
    (then the server is shut down anyway and the row reports how many had started)."""
    started, last_change = 0, time.perf_counter()
    deadline = last_change + 60
    while started < n and time.perf_counter() < deadline:
        now_started = client.get("/progress").json()["async_started"]
        if now_started != started:
            started, last_change = now_started, time.perf_counter()
        elif time.perf_counter() - last_change > stall:
            break
        time.sleep(0.02)
    return started


def _shutdown_shielded(spec: ServerSpec, sizes: ShutdownSizes) -> Measurement:
    with tempfile.TemporaryDirectory() as tmp:
        effects = Path(tmp) / "side-effects.txt"
        with Server(spec, side_effects=effects) as server:
            with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
                client.post(
                    "/shielded",
                    params={"n": sizes.shielded_tasks, "seconds": sizes.shielded_seconds},
                )
            seconds = server.stop()
            exited_at = server.exited_at or time.time()
        lines = effects.read_text().split() if effects.exists() else []
        last = max((float(line) for line in lines), default=float("nan"))
        return {
            "exit_s": seconds,
            "side_effects": len(lines),
            "exit_after_last_task_s": exited_at - last,
        }


def shutdown(
    specs: list[ServerSpec], sizes: ShutdownSizes, rounds: int, log: Callable[[str], None]
) -> dict[str, Series]:
    """SIGTERM-to-exit time of a fresh server: idle, with ``async_tasks`` sleeping unshielded
    tasks, and with ``shielded_tasks`` shielded tasks of ``shielded_seconds`` each."""
    variants: dict[str, Callable[[], Measurement]] = {}
    for spec in specs:
        variants[f"{spec.label}:idle_exit_s"] = _bind(_shutdown_idle, spec)
        variants[f"{spec.label}:unshielded"] = _bind(lambda s: _shutdown_unshielded(s, sizes), spec)
        variants[f"{spec.label}:shielded"] = _bind(lambda s: _shutdown_shielded(s, sizes), spec)
    log(
        f"shutdown: idle / {sizes.async_tasks} unshielded / {sizes.shielded_tasks} shielded x "
        f"{sizes.shielded_seconds}s for {len(specs)} servers"
    )
    return _split(interleave_sync(variants, rounds=rounds, log=log))


def _bind(func: Callable[[ServerSpec], Measurement], spec: ServerSpec) -> Callable[[], Measurement]:
    return lambda: func(spec)
