"""Shared fixtures: apps wired with add_tasks and clients that run the real lifespan.

* Every async test runs twice, through anyio's pytest plugin: on asyncio in debug mode and on
  trio. A test that only makes sense on one of them says so with ``pytest.mark.asyncio_only``
  (and why); test modules may also override ``anyio_backend`` themselves.
* No test may leave a non-daemon thread behind: Python waits for such threads at exit, so one
  that never ends hangs the whole run after the last test passed. The autouse fixture
  ``no_leftover_threads`` gives the threads a test started a short grace period to end and then
  fails the test; ``pytest_sessionfinish`` fails the session if any is still alive at the end.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from hypothesis import settings

from fastapi_tasks import add_tasks

#: Seconds a test's threads get to end after it finished before the test fails.
THREAD_GRACE = 5.0

# The property tests: a fixed, derandomized run on CI; the random search on a developer's machine.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev")
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


#: Tests not (yet) run on trio, by node id prefix, with the reason (the skip shows it under -ra).
NOT_ON_TRIO = {
    "tests/test_task_semantics.py::test_tasks_start_in_the_order_they_were_scheduled": (
        "trio does not run newly spawned tasks in FIFO order: start order is not kept there"
    ),
    "tests/test_timing.py::test_all_three_modes_in_one_endpoint": (
        "trio does not run newly spawned tasks in FIFO order: start order is not kept there"
    ),
    "tests/test_timing.py::test_deferred_tasks_keep_their_order": (
        "trio does not run newly spawned tasks in FIFO order: start order is not kept there"
    ),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "asyncio_only(reason): the test drives asyncio itself; it does not run on trio",
    )


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"debug": True}), id="asyncio"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    backend: tuple[str, dict[str, Any]] = request.param
    marker = request.node.get_closest_marker("asyncio_only")
    if marker is not None and backend[0] != "asyncio":
        pytest.skip(f"asyncio only: {marker.args[0] if marker.args else 'drives asyncio'}")
    if backend[0] == "trio":
        nodeid = request.node.nodeid
        for prefix, reason in NOT_ON_TRIO.items():
            if nodeid.startswith(prefix):
                pytest.skip(f"not on trio: {reason}")
    return backend


def _non_daemon_threads() -> set[threading.Thread]:
    return {
        thread
        for thread in threading.enumerate()
        if not thread.daemon and thread is not threading.main_thread()
    }


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    """Fail the test if a non-daemon thread it started outlives it (after a grace period)."""
    before = _non_daemon_threads()
    yield
    leftovers = [thread for thread in _non_daemon_threads() - before if thread.is_alive()]
    for thread in leftovers:
        thread.join(THREAD_GRACE / len(leftovers))
    alive = [thread.name for thread in leftovers if thread.is_alive()]
    if alive:
        pytest.fail(
            f"the test left non-daemon threads running ({', '.join(alive)}); the interpreter "
            "would wait for them at exit",
            pytrace=False,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A non-daemon thread alive at the end would hang the interpreter's exit: fail instead."""
    alive = [thread for thread in _non_daemon_threads() if thread.is_alive()]
    for thread in alive:
        thread.join(THREAD_GRACE)
    still = [thread.name for thread in alive if thread.is_alive()]
    if still:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"ERROR: non-daemon threads still running at the end of the session: "
                f"{', '.join(still)}",
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        _hanging.extend(alive)


_hanging: list[threading.Thread] = []


def pytest_unconfigure(config: pytest.Config) -> None:
    """The very last hook (reports and coverage data are written): exit without waiting for
    threads that would otherwise hang the interpreter."""
    if any(thread.is_alive() for thread in _hanging):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(pytest.ExitCode.TESTS_FAILED))


def http_scope(
    method: str, path: str, *, spec_version: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The scope a server passes for an HTTP request ``method path``, for tests that call an
    app through the raw ASGI interface. Below ASGI spec version 2.4 (the default, 2.0, too),
    Starlette's ``StreamingResponse`` listens for disconnects while it streams."""
    asgi = (
        {"version": "3.0"}
        if spec_version is None
        else {"version": "3.0", "spec_version": spec_version}
    )
    return {
        "type": "http",
        "asgi": asgi,
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 12345),
        **extra,
    }


@asynccontextmanager
async def serve(app: FastAPI, **client_kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and yield an httpx client talking to it over real ASGI."""
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(manager.app, **client_kwargs)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


class BackgroundLifespan:
    """An app's lifespan run in a task of its own (see :func:`lifespan_in_background`)."""

    def __init__(self, app: Any) -> None:
        #: The ASGI app to send requests to (it carries the lifespan state).
        self.app = app
        self.ended = anyio.Event()
        self._stop = anyio.Event()

    def shutdown(self) -> None:
        """Begin the shutdown and return at once: the test goes on while the drain runs."""
        self._stop.set()


@asynccontextmanager
async def lifespan_in_background(app: FastAPI) -> AsyncIterator[BackgroundLifespan]:
    """Run ``app``'s lifespan in a task of its own, so that a test can act *during* the drain
    (``life.shutdown()``; ``await life.ended.wait()``). Leaving the block shuts down if the
    test did not and waits for the lifespan to end. The lifespan is entered and left by the
    same task, as trio requires of the task group inside it."""

    async def run(*, task_status: anyio.abc.TaskStatus[BackgroundLifespan]) -> None:
        async with LifespanManager(app) as manager:
            life = BackgroundLifespan(manager.app)
            task_status.started(life)
            await life._stop.wait()
        life.ended.set()

    async with anyio.create_task_group() as tg:
        life: BackgroundLifespan = await tg.start(run)
        try:
            yield life
        finally:
            life.shutdown()


@contextmanager
def raises_unwrapped(expected: type[BaseException], match: str) -> Iterator[list[BaseException]]:
    """``pytest.raises(expected, match=match)`` that also accepts the error wrapped in exception
    groups of one (asgi-lifespan on trio re-raises a startup error from its nursery). The list
    it yields receives the unwrapped error."""
    caught: list[BaseException] = []
    try:
        yield caught
    except BaseException as exc:
        error: BaseException = exc
        while len(getattr(error, "exceptions", ())) == 1:
            error = error.exceptions[0]  # type: ignore[attr-defined]
        if not isinstance(error, expected) or not re.search(match, str(error)):
            raise
        caught.append(error)
    else:
        pytest.fail(f"DID NOT RAISE {expected.__name__}")


@pytest.fixture
def make_app() -> Callable[..., FastAPI]:
    """``make_app(**add_tasks_kwargs)``: a fresh FastAPI app with the task runtime wired in."""

    def factory(**kwargs: Any) -> FastAPI:
        app = FastAPI()
        add_tasks(app, **kwargs)
        return app

    return factory


@pytest.fixture
def task_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="fastapi_tasks")
    return caplog
