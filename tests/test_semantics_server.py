"""Fairness and a bounded shutdown under a real uvicorn: a server with a task that reschedules
itself forever still answers and stops on SIGTERM; with ``shutdown_timeout`` the lifespan ends
at the deadline and the process exits although tasks still wait on threads or swallow their
cancellation. (That a task finishing after the deadline is logged is tested in-process, in
test_task_semantics.py: uvicorn ends the process right after the lifespan.)"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .test_server import Server


class Uvicorn(Server):
    """uvicorn serving tests.semantics_app (the server helpers of test_server.py)."""

    def __init__(self, out: Path, **env: str) -> None:
        super().__init__(out, env, app="tests.semantics_app:app")

    def wait_for(self, condition: object, what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(condition) and condition():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output()}")

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{self.output()}")
        try:
            return self.client.get("/health").status_code == 200
        except httpx.TransportError:
            return False


@pytest.fixture
def uvicorn(tmp_path: Path) -> Iterator[Uvicorn]:
    server = Uvicorn(tmp_path)
    try:
        server.wait_for(server.ready, "the server to answer")
        yield server
    finally:
        server.stop()


def test_a_task_that_reschedules_itself_never_starves_requests_or_signals(
    uvicorn: Uvicorn,
) -> None:
    uvicorn.client.post("/spin")
    seen = [uvicorn.client.get("/health").json()["spins"] for _ in range(10)]
    assert seen == sorted(seen) and seen[-1] > seen[0]  # it keeps spinning; we keep answering
    uvicorn.proc.send_signal(signal.SIGTERM)
    uvicorn.proc.wait(timeout=15)
    output = uvicorn.output()
    assert "Application shutdown complete" in output
    assert "drained in" in output


def test_the_lifespan_ends_at_the_deadline_and_late_ends_are_logged(
    uvicorn: Uvicorn, tmp_path: Path
) -> None:
    kinds = ("async", "sync", "stubborn")
    uvicorn.client.post("/blocked")
    uvicorn.wait_for(
        lambda: all((tmp_path / f"release-{k}.started").exists() for k in kinds),
        "the three tasks to be waiting",
    )
    uvicorn.client.close()
    uvicorn.proc.send_signal(signal.SIGTERM)
    # The lifespan completes at shutdown_timeout while all three still wait for their file.
    uvicorn.wait_for(
        lambda: "Application shutdown complete" in uvicorn.output(), "the lifespan to end"
    )
    output = uvicorn.output()
    for name in ("threadpool-waiter", "sync-waiter", "stubborn"):
        assert f"abandoning {name}" in output
    assert "3 abandoned" in output
    # None of them was ever released, and the process exits all the same: nothing the tasks
    # do (a thread that never returns, a task that swallows cancellations) holds it.
    uvicorn.proc.wait(timeout=15)
    assert "Finished server process" in uvicorn.output()
    assert not any((tmp_path / f"release-{k}").exists() for k in kinds)
