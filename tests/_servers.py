"""ASGI servers as real subprocesses for the server matrix (tests/test_server_matrix.py).

Each :class:`ServerSpec` knows the command line that serves an app under one server and
configuration; :class:`RunningServer` starts it on 127.0.0.1 with a free port, in a process group
of its own (gunicorn, granian and uvicorn with ``--workers`` fork workers), waits until it
answers, and stops it: a signal to the process it started, or ``SIGKILL`` to that process group
when a test is done with it. Nothing else is ever signalled.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from .test_server import ROOT, free_port

#: The command lines docs/servers.md shows, one per file; the matrix runs exactly these.
COMMANDS = ROOT / "docs_src" / "servers"


@dataclass(frozen=True)
class ServerSpec:
    id: str
    #: Modules the server needs; the configuration is skipped if one does not import.
    modules: tuple[str, ...]
    workers: int
    #: The file in docs_src/servers/ with the command line (see :meth:`command`).
    doc: str
    #: What a second SIGINT to the whole process group (a second Ctrl+C) does while the first
    #: one still waits for a request in flight (docs/servers.md): "drains" (ignored),
    #: "forced" (the worker exits without the lifespan shutdown; fastapi-tasks logs what is
    #: lost), or why the matrix cannot check it.
    second_sigint: str

    def command(self, app: str, port: int) -> list[str]:
        """The command of ``docs_src/servers/<doc>.sh``, run with this interpreter (``python -m
        <server>``), serving ``app`` on 127.0.0.1:``port`` instead of ``main:app`` on
        0.0.0.0:8000."""
        words = shlex.split((COMMANDS / f"{self.doc}.sh").read_text(), comments=True)
        argv = [sys.executable, "-m", words[0]]
        for word in words[1:]:
            word = word.replace("main:app", app).replace("0.0.0.0", "127.0.0.1")
            argv.append(word.replace("8000", str(port)))
        return argv

    def missing(self) -> str | None:
        """Why this server cannot run here, or None."""
        for module in self.modules:
            if importlib.util.find_spec(module) is None:
                return f"{self.id}: the {module!r} package is not installed (pip install {module})"
        return None


FORCED_SILENTLY = (
    "the forced worker can die of a signal it re-raises with the default handler before its "
    "event loop closes: nothing can log the shielded tasks it loses; see docs/servers.md"
)

SERVERS = [
    ServerSpec("uvicorn", ("uvicorn",), 1, "uvicorn", "forced"),
    ServerSpec(
        "uvicorn-2-workers",
        ("uvicorn",),
        2,
        "uvicorn_workers",
        FORCED_SILENTLY,
    ),
    ServerSpec("hypercorn-asyncio", ("hypercorn",), 1, "hypercorn", "drains"),
    ServerSpec(
        "hypercorn-trio",
        ("hypercorn", "trio"),
        1,
        "hypercorn_trio",
        "drains",
    ),
    ServerSpec(
        "granian",
        ("granian",),
        1,
        "granian",
        "a granian worker that gets a second SIGINT or SIGTERM while a request is in flight "
        "never exits (granian 2.8, without fastapi-tasks too); see docs/servers.md",
    ),
    ServerSpec(
        "gunicorn-uvicorn-worker",
        ("gunicorn", "uvicorn_worker"),
        2,
        "gunicorn",
        FORCED_SILENTLY,
    ),
]


class RunningServer:
    """One server process serving ``app`` on a free port, its output in ``log``."""

    def __init__(
        self, spec: ServerSpec, app: str, out: Path, env: dict[str, str], cwd: Path = ROOT
    ) -> None:
        self.spec = spec
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = out / f"{spec.id}-{self.port}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                spec.command(app, self.port),
                cwd=cwd,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: see stop()
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.spec.id} exited early:\n{self.tail()}")
                try:
                    if client.get("/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.spec.id} never answered:\n{self.tail()}")
                time.sleep(0.05)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM to the server process (its workers get the signal from it); its exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.spec.id} still running {timeout}s after SIGTERM:\n{self.tail()}"
            ) from None

    def stop(self) -> None:
        """Kill what is left of the process group this server started (workers included)."""
        with contextlib.suppress(ProcessLookupError):  # the whole group has exited already
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def start(spec: ServerSpec, app: str, out: Path, env: dict[str, str]) -> RunningServer:
    server = RunningServer(spec, app, out, env)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def wait_for_files(
    out: Path, names: list[str], server: RunningServer, timeout: float = 10
) -> dict[str, str]:
    """Wait until every file in ``names`` exists in ``out``; return their contents."""
    deadline = time.monotonic() + timeout
    while True:
        missing = [name for name in names if not (out / name).exists()]
        if not missing:
            return {name: (out / name).read_text() for name in names}
        if time.monotonic() > deadline:
            present = {name: (out / name).read_text() for name in names if name not in missing}
            raise AssertionError(
                f"{server.spec.id}: {missing} never appeared (got {present});\n{server.tail()}"
            )
        time.sleep(0.01)
