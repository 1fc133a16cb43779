"""Measurement helpers shared by the scenarios: interleaved rounds, percentiles, waiting, and
a raw ASGI client. Imports nothing from ``fastapi_tasks``."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import anyio

__all__ = [
    "Measurement",
    "RawASGI",
    "Series",
    "interleave",
    "interleave_sliced",
    "interleave_sync",
    "percentile",
    "wait_until",
]

#: Per-round values of each measured figure, keyed ``variant`` or ``variant:metric``.
Series = dict[str, list[float]]
#: One run of a variant: a single figure, or several figures taken in the same run.
Measurement = float | Mapping[str, float]

ASGIMessage = MutableMapping[str, Any]
ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[ASGIMessage]],
        Callable[[ASGIMessage], Awaitable[None]],
    ],
    Awaitable[None],
]


def _record(out: Series, name: str, value: Measurement) -> None:
    if isinstance(value, Mapping):
        for metric, figure in value.items():
            out.setdefault(f"{name}:{metric}", []).append(float(figure))
    else:
        out.setdefault(name, []).append(float(value))


def _order(names: list[str], round_no: int) -> list[str]:
    """Rotate the variants each round so none always runs first (or right after another)."""
    shift = round_no % len(names)
    return names[shift:] + names[:shift]


async def interleave(
    variants: Mapping[str, Callable[[], Awaitable[Measurement]]],
    *,
    rounds: int,
    warmup: int = 1,
    log: Callable[[str], None] | None = None,
) -> Series:
    """Run every variant once per round, in rotating order; drop the ``warmup`` rounds.

    Values of the same round index were measured close together in time, so ratios are taken
    per round (paired) and then their median is reported.
    """
    out: Series = {}
    names = list(variants)
    for round_no in range(warmup + rounds):
        for name in _order(names, round_no):
            gc.collect()
            value = await variants[name]()
            if round_no >= warmup:
                _record(out, name, value)
        if log is not None and round_no >= warmup:
            log(f"round {round_no - warmup + 1}/{rounds} done")
    return out


async def interleave_sliced(
    variants: Mapping[str, Callable[[], Awaitable[float]]],
    *,
    units: int,
    rounds: int,
    slices: int,
    warmup: int = 1,
    log: Callable[[str], None] | None = None,
) -> Series:
    """:func:`interleave` with each round cut into ``slices`` short turns.

    Each call of a variant does ``units`` units of work (requests, say) and returns the seconds
    it took. Within a round the variants take turns slice by slice, in rotating order, so every
    variant's figure for the round (units per second over all its slices) is spread over the
    same stretch of time as the others'. A burst of noise from the machine then lands on all
    of them instead of on whichever variant happened to be running.
    """
    out: Series = {}
    names = list(variants)
    for round_no in range(warmup + rounds):
        seconds = dict.fromkeys(names, 0.0)
        for slice_no in range(slices):
            for name in _order(names, round_no * slices + slice_no):
                gc.collect()
                seconds[name] += await variants[name]()
        if round_no >= warmup:
            for name in names:
                _record(out, name, units * slices / seconds[name])
            if log is not None:
                log(f"round {round_no - warmup + 1}/{rounds} done")
    return out


def interleave_sync(
    variants: Mapping[str, Callable[[], Measurement]],
    *,
    rounds: int,
    warmup: int = 0,
    log: Callable[[str], None] | None = None,
) -> Series:
    """:func:`interleave` for blocking variants (the ones that drive a real server)."""
    out: Series = {}
    names = list(variants)
    for round_no in range(warmup + rounds):
        for name in _order(names, round_no):
            gc.collect()
            value = variants[name]()
            if round_no >= warmup:
                _record(out, name, value)
        if log is not None and round_no >= warmup:
            log(f"round {round_no - warmup + 1}/{rounds} done")
    return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def wait_until(
    condition: Callable[[], bool], *, timeout: float = 60.0, poll: float = 0.0
) -> None:
    """Yield to the event loop until ``condition()`` holds. ``poll=0`` yields one loop turn at a
    time (cheapest to notice, what the throughput scenarios use).

    :raises TimeoutError: after ``timeout`` seconds.
    """
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await anyio.sleep(poll)


class RawASGI:
    """Calls an ASGI app directly with a hand-made HTTP scope: no client, no transport.

    ``state`` is the lifespan state; like a server, every request gets a shallow copy of it.
    """

    def __init__(self, app: ASGIApp, state: Mapping[str, Any]) -> None:
        self.app = app
        self.state = state

    async def get(self, path: str) -> int:
        """``GET path``; returns the status code once the app has returned."""
        status = 0
        request_sent = False
        response_done = False
        disconnect: anyio.Event | None = None

        async def receive() -> ASGIMessage:
            nonlocal request_sent, disconnect
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if not response_done:  # like a client: disconnect only after the response
                disconnect = anyio.Event()
                await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: ASGIMessage) -> None:
            nonlocal status, response_done
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.body" and not message.get("more_body", False):
                response_done = True
                if disconnect is not None:
                    disconnect.set()

        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"bench")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
            "state": dict(self.state),
        }
        await self.app(scope, receive, send)
        return status
