"""Event-loop primitives the worker pool needs, picked once per run for the running backend.

* a *waiter*: a one-shot hand-off a parked worker awaits and ``schedule()`` completes;
* *call_soon*: run a plain callback on the next turn of the event loop.

On asyncio these are ``loop.create_future`` and ``loop.call_soon`` (public asyncio API, a few
hundred nanoseconds each). On trio they are an :class:`anyio.Event`-based waiter and
``trio.lowlevel.current_trio_token().run_sync_soon``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any, Protocol

import anyio

__all__ = ["Backend", "Waiter", "current_backend"]


class Waiter(Protocol):
    """The subset of ``asyncio.Future`` the worker pool uses. The result is a task or None."""

    def set_result(self, result: Any, /) -> None: ...
    def done(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def result(self) -> Any: ...
    def __await__(self) -> Generator[Any, None, Any]: ...


class _EventWaiter:
    __slots__ = ("_done", "_event", "_result")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._done = False
        self._result: Any = None

    def set_result(self, result: Any, /) -> None:
        self._result = result
        self._done = True
        self._event.set()

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return False

    def result(self) -> Any:
        return self._result

    def __await__(self) -> Generator[Any, None, Any]:
        yield from self._event.wait().__await__()
        return self._result


class Backend:
    __slots__ = ("call_soon", "new_waiter")

    def __init__(
        self, new_waiter: Callable[[], Waiter], call_soon: Callable[[Callable[[], None]], Any]
    ) -> None:
        self.new_waiter = new_waiter
        self.call_soon = call_soon


def current_backend() -> Backend:
    """The primitives for the event loop running in this thread."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        import trio.lowlevel  # only reachable when running under trio

        return Backend(_EventWaiter, trio.lowlevel.current_trio_token().run_sync_soon)
    return Backend(loop.create_future, loop.call_soon)
