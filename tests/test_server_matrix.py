"""The timing modes, discarding and the drain under every ASGI server we support, each a real
subprocess on 127.0.0.1 serving tests/matrix_app.py over real HTTP.

One server per configuration serves all the HTTP scenarios (a module-scoped fixture, so pytest
runs a configuration's tests together); the SIGTERM scenario gets a short-lived server of its
own. Tasks leave their outcomes in files (see tests/matrix_app.py), so the assertions do not
depend on which worker served a request. A server that is not installed is skipped, and the
skip says why. docs/servers.md describes each server's behaviour the matrix pins down.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ._servers import SERVERS, RunningServer, ServerSpec, start, wait_for_files

APP = "tests.matrix_app:app"
SERVED_SIZE = 200_000  # the size of the file tests/matrix_app.py serves
MODES = ("after_route", "after_response")


@dataclass
class Served:
    """A running server, the directory its tasks write to, and a client without keep-alive (a
    new connection per request, which spreads requests over the workers)."""

    server: RunningServer
    out: Path
    #: Closes its connection after each answer (to a HEAD too: the answer is the head).
    client: httpx.Client
    _tags: Iterator[int] = field(default_factory=itertools.count)

    def tag(self, scenario: str) -> str:
        return f"{scenario}-{next(self._tags)}"

    def outcomes(self, tag: str, *modes: str) -> dict[str, str]:
        """Wait for the final state of each of the request's tasks; {mode: state}."""
        names = [f"{tag}.{mode}.state" for mode in modes]
        found = wait_for_files(self.out, names, self.server)
        return {mode: found[f"{tag}.{mode}.state"] for mode in modes}


@pytest.fixture(scope="module", params=[pytest.param(spec, id=spec.id) for spec in SERVERS])
def spec(request: pytest.FixtureRequest) -> ServerSpec:
    server: ServerSpec = request.param
    reason = server.missing()
    if reason is not None:
        pytest.skip(reason)
    return server


@pytest.fixture(scope="module")
def served(spec: ServerSpec, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    out = tmp_path_factory.mktemp(f"matrix-{spec.id}") / "out"
    out.mkdir()
    server = start(spec, APP, out, {"MATRIX_OUT": str(out)})
    limits = httpx.Limits(max_keepalive_connections=0)
    try:
        with httpx.Client(base_url=server.url, timeout=15, limits=limits) as client:
            yield Served(server, out, client)
    finally:
        server.stop()


# --- the three modes ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_the_three_modes(served: Served, kind: str) -> None:
    tag = served.tag(f"modes-{kind}")
    answer = served.client.post(f"/modes/{kind}", params={"tag": tag}).json()
    # the plain task ran while the endpoint waited; the deferred ones had not started
    assert answer == {"now": "succeeded", "deferred_ran_before_return": []}
    assert served.outcomes(tag, "now", *MODES) == dict.fromkeys(("now", *MODES), "succeeded")
    assert all((served.out / f"{tag}.{mode}").read_text() == "ran" for mode in MODES)


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_the_three_modes_from_a_def_endpoint(served: Served, kind: str) -> None:
    tag = served.tag(f"modes-def-{kind}")
    assert served.client.post(f"/modes-def/{kind}", params={"tag": tag}).json() == "scheduled"
    assert served.outcomes(tag, "now", *MODES) == dict.fromkeys(("now", *MODES), "succeeded")


# --- after-response on every kind of response ----------------------------------------------------


@pytest.mark.parametrize("sync", [False, True], ids=["async-iterator", "sync-iterator"])
def test_streaming_response(served: Served, sync: bool) -> None:
    tag = served.tag("stream")
    response = served.client.get("/stream", params={"tag": tag, "sync": sync})
    lines = response.text.splitlines()
    assert response.status_code == 200
    assert len(lines) == 22
    # after-route tasks were released with the headers, before the first chunk
    assert lines[0] == "after_route: succeeded"
    # the after-response one waited for the last chunk
    assert lines[-1] == "after_response ran before the last chunk: False"
    assert served.outcomes(tag, *MODES) == dict.fromkeys(MODES, "succeeded")


def test_server_sent_events(served: Served) -> None:
    tag = served.tag("sse")
    response = served.client.get("/sse", params={"tag": tag})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.count("event: tick") == 20
    assert 'data: {"after_response ran before the last event": false}' in response.text
    assert served.outcomes(tag, "after_response") == {"after_response": "succeeded"}


def test_json_lines(served: Served) -> None:
    tag = served.tag("jsonl")
    response = served.client.get("/jsonl", params={"tag": tag})
    assert response.headers["content-type"] == "application/jsonl"
    lines = response.text.splitlines()
    assert len(lines) == 21
    assert lines[-1] == '{"after_response ran before the last line":false}'
    assert served.outcomes(tag, "after_response") == {"after_response": "succeeded"}


def test_file_response(served: Served, spec: ServerSpec) -> None:
    tag = served.tag("file")
    response = served.client.get("/file", params={"tag": tag})
    assert (response.status_code, len(response.content)) == (200, SERVED_SIZE)
    # Granian offers the pathsend extension: the file goes out in one http.response.pathsend
    assert response.headers["x-pathsend"] == str(spec.id == "granian")
    assert served.outcomes(tag, "after_response") == {"after_response": "succeeded"}


def test_file_range(served: Served) -> None:
    tag = served.tag("range")
    response = served.client.get("/file", params={"tag": tag}, headers={"range": "bytes=0-99"})
    assert (response.status_code, response.content) == (206, b"0123456789abcdef" * 6 + b"0123")
    assert served.outcomes(tag, "after_response") == {"after_response": "succeeded"}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/plain", 200),  # an empty body
        ("HEAD", "/plain", 200),
        ("GET", "/plain", 204),
        ("GET", "/plain", 304),
        ("HEAD", "/stream", 200),
    ],
    ids=["empty-body", "head", "204", "304", "head-streaming"],
)
def test_responses_without_a_body(
    served: Served,
    method: str,
    path: str,
    status: int,
) -> None:
    tag = served.tag("bodiless")
    response = served.client.request(method, path, params={"tag": tag, "status": status})
    assert (response.status_code, response.content) == (status, b"")
    assert served.outcomes(tag, *MODES) == dict.fromkeys(MODES, "succeeded")


# --- a client that leaves before the end ---------------------------------------------------------


def read_then_leave(server: RunningServer, target: str, nbytes: int = 4000) -> bytes:
    """Send a GET on a raw connection, read ``nbytes`` of the answer, and close the socket."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        received = b""
        while len(received) < nbytes:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed the stream early: {received[-200:]!r}"
            received += chunk
    return received


@pytest.mark.parametrize("shape", ["", "/mw"], ids=["plain", "base-http-middleware"])
@pytest.mark.parametrize(
    ("kind", "query"),
    [("stream", "endless=1"), ("sse", "events=-1"), ("jsonl", "lines=-1")],
    ids=["streaming", "sse", "jsonl"],
)
def test_client_leaving_mid_stream_discards_after_response_tasks(
    served: Served, shape: str, kind: str, query: str
) -> None:
    tag = served.tag(f"leave-{kind}")
    received = read_then_leave(served.server, f"{shape}/{kind}?tag={tag}&{query}")
    assert received.startswith(b"HTTP/1.1 200")
    assert served.outcomes(tag, "after_response") == {"after_response": "cancelled"}
    assert not (served.out / f"{tag}.after_response").exists()
    if kind == "stream":
        assert b"after_route: succeeded" in received
    if kind == "stream" and not shape:
        # The export stops: its generator is closed. (Behind a BaseHTTPMiddleware, and in an
        # SSE endpoint, whose body FastAPI runs in a task of its own, the generator is left
        # suspended at a yield and closed whenever the garbage collector gets to it.)
        wait_for_files(served.out, [f"{tag}.generator-closed"], served.server)


# --- an endpoint that raises ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param("", id="plain"),
        pytest.param("/mw", id="base-http-middleware-answers-500"),
        pytest.param("/caught", id="route-class-answers-500"),
    ],
)
@pytest.mark.parametrize(
    ("kind", "status"),
    [("http", 409), ("handled", 418), ("plain", 500)],
    ids=["HTTPException", "handled-exception", "plain-exception"],
)
def test_an_endpoint_raising_discards_deferred_tasks(
    served: Served, shape: str, kind: str, status: int
) -> None:
    tag = served.tag(f"raise-{kind}")
    response = served.client.post(f"{shape}/raise/{kind}", params={"tag": tag})
    # the route class catches everything itself, HTTPException included
    assert response.status_code == (500 if shape == "/caught" else status)
    assert served.outcomes(tag, "now", *MODES) == {
        "now": "succeeded",
        "after_route": "cancelled",
        "after_response": "cancelled",
    }


# --- mounted sub-apps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sub", ["/sub-shared", "/sub-own"], ids=["shared-runtime", "own-add-tasks"]
)
def test_mounted_sub_app(served: Served, sub: str) -> None:
    tag = served.tag("sub")
    assert served.client.get(f"{sub}/plain", params={"tag": tag}).status_code == 200
    assert served.outcomes(tag, *MODES) == dict.fromkeys(MODES, "succeeded")
    tag = served.tag("sub-raise")
    assert served.client.post(f"{sub}/raise/http", params={"tag": tag}).status_code == 409
    assert served.outcomes(tag, *MODES) == dict.fromkeys(MODES, "cancelled")


# --- SIGTERM -------------------------------------------------------------------------------------


class StreamReader:
    """Reads a streaming response on a thread of its own: a request in flight."""

    def __init__(self, url: str, params: dict[str, str | int | float]) -> None:
        self.lines: list[str] = []
        self.started = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, args=(url, params))
        self._thread.start()

    def _read(self, url: str, params: dict[str, str | int | float]) -> None:
        try:
            with httpx.stream("GET", url, params=params, timeout=30) as response:
                for line in response.iter_lines():
                    self.lines.append(line)
                    self.started.set()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.started.set()

    def join(self) -> list[str]:
        self._thread.join(30)
        assert not self._thread.is_alive(), "the streaming request never ended"
        return self.lines


@dataclass
class Stopped:
    out: Path
    returncode: int
    shielded: list[str]
    stream: list[str]
    stream_error: BaseException | None
    output: str


def schedule_shielded(server: RunningServer) -> list[str]:
    """Shielded tasks (3 async, 3 sync) that wait for the drain, and as many endless unshielded
    ones, all started."""
    shielded = [f"shielded-{kind}-{i}" for kind in ("async", "sync") for i in range(3)]
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=server.url, timeout=15, limits=limits) as client:
        for name in shielded:
            # answered once the shielded task (and an endless unshielded one) started
            params = {"name": name, "kind": name.split("-")[1]}
            assert client.post("/shielded", params=params).status_code == 200
    return shielded


@pytest.fixture(scope="module")
def stopped(spec: ServerSpec, tmp_path_factory: pytest.TempPathFactory) -> Stopped:
    """A server of its own with shielded tasks running (and endless unshielded ones), and a
    streaming response in flight whose after-response task is shielded; then SIGTERM."""
    out = tmp_path_factory.mktemp(f"sigterm-{spec.id}") / "out"
    out.mkdir()
    server = start(spec, APP, out, {"MATRIX_OUT": str(out)})
    try:
        shielded = schedule_shielded(server)
        # about half a second of streaming; SIGTERM comes once its first line is in
        params = {"tag": "in-flight", "chunks": 25, "delay": 0.02, "shield": 1}
        stream = StreamReader(f"{server.url}/stream", params)
        assert stream.started.wait(15)
        returncode = server.terminate()
        lines = stream.join()
    finally:
        server.stop()
    return Stopped(out, returncode, shielded, lines, stream.error, server.output())


def test_sigterm_exits_cleanly(stopped: Stopped) -> None:
    assert stopped.returncode in (0, -signal.SIGTERM), stopped.output[-3000:]


def test_sigterm_completes_shielded_tasks(stopped: Stopped) -> None:
    written = sorted(p.name for p in stopped.out.iterdir() if p.name.startswith("shielded-"))
    assert written == sorted(stopped.shielded), stopped.output[-3000:]


def test_sigterm_cancels_unshielded_tasks(stopped: Stopped) -> None:
    # the endless ones were cancelled (the server did exit, see the fixture's terminate())
    assert not list(stopped.out.glob("*.x"))


def test_sigterm_drains_before_router_lifespans_tear_down(stopped: Stopped) -> None:
    written = [stopped.out / name for name in stopped.shielded if (stopped.out / name).exists()]
    assert written, "no shielded task completed"
    assert {path.read_text() for path in written} == {"pool open: True"}, stopped.output[-3000:]


def test_sigterm_lets_a_response_in_flight_finish_and_drains_its_after_response_task(
    stopped: Stopped,
) -> None:
    assert stopped.stream_error is None
    assert stopped.stream[-1] == "after_response ran before the last chunk: False"
    assert len(stopped.stream) == 27
    # released once the stream ended, during the server's graceful shutdown: the drain ran it
    assert (stopped.out / "in-flight.after_response").read_text() == "pool open: True"


# --- a second Ctrl+C -----------------------------------------------------------------------------


@dataclass
class Interrupted:
    out: Path
    shielded: list[str]
    output: str


def serving(server: RunningServer) -> bool:
    try:
        with httpx.Client(base_url=server.url, timeout=1) as client:
            return client.get("/health").status_code == 200
    except httpx.TransportError:  # refused, or queued in a backlog nobody accepts any more
        return False


@pytest.fixture(scope="module")
def interrupted(spec: ServerSpec, tmp_path_factory: pytest.TempPathFactory) -> Interrupted:
    """Ctrl+C twice (SIGINT to the server's whole process group, as a terminal sends it) while a
    client holds a stream open and shielded tasks run."""
    if spec.second_sigint not in ("drains", "forced"):
        pytest.skip(spec.second_sigint)
    out = tmp_path_factory.mktemp(f"sigint-{spec.id}") / "out"
    out.mkdir()
    server = start(spec, APP, out, {"MATRIX_OUT": str(out)})
    try:
        shielded = schedule_shielded(server)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as held:
            held.sendall(b"GET /stream?tag=held&endless=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert held.recv(100).startswith(b"HTTP/1.1 200")
            os.killpg(server.proc.pid, signal.SIGINT)
            deadline = time.monotonic() + 15
            while serving(server):
                assert time.monotonic() < deadline, f"still serving:\n{server.tail()}"
            os.killpg(server.proc.pid, signal.SIGINT)
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after two SIGINTs:\n{server.tail()}") from None
    finally:
        server.stop()
    return Interrupted(out, shielded, server.output())


def test_a_second_ctrl_c_loses_no_shielded_task_silently(
    interrupted: Interrupted, spec: ServerSpec
) -> None:
    """Where the second Ctrl+C is ignored, the drain completes every shielded task; where it
    forces the exit before the lifespan shutdown, fastapi-tasks logs the forced exit and names
    each shielded task that had not completed (a sync one may still finish in its thread)."""
    forced = [line for line in interrupted.output.splitlines() if "without a shutdown" in line]
    completed = [name for name in interrupted.shielded if (interrupted.out / name).exists()]
    if spec.second_sigint == "drains":
        assert (forced, completed) == ([], interrupted.shielded), interrupted.output[-3000:]
    else:
        assert forced, interrupted.output[-3000:]
        lost = "\n".join(forced)
        assert all(name in completed or name in lost for name in interrupted.shielded), (
            interrupted.output[-3000:]
        )
