"""The event-loop primitives the runtime needs, for the loop running in this thread.

* ``spawn(async_fn, *args, context=ctx)``: start a *native* task (one per scheduled async task)
  that runs in ``ctx``, and return something with a ``cancel()`` method, or ``None`` when the
  task sets its own canceller once it starts.
* ``call_soon_threadsafe(fn, *args)``: run a callback on the loop from any thread without
  waiting for it; ``False`` when the loop is gone (nothing ever blocks on a closed loop).

On asyncio a task is ``loop.create_task(coro, context=ctx)`` (``ctx.run(loop.create_task, coro)``
on Python 3.10), cancelled with ``Task.cancel()``: public asyncio API, a few microseconds. On
trio it is a system task started with ``trio.lowlevel.spawn_system_task(..., context=ctx)``
whose body opens its own ``trio.CancelScope``. Neither belongs to a task group the lifespan has
to wait for, which is what lets the shutdown give up on a task at its deadline.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from contextvars import Context
from typing import Any, Protocol

__all__ = ["Backend", "Canceller", "backend_for_running_loop"]


class Canceller(Protocol):
    def cancel(self) -> Any: ...


class Backend(Protocol):
    cancelled_exc: type[BaseException]
    #: ``spawn()`` returns the canceller (asyncio); else the task sets its own (trio).
    cancels_natively: bool
    #: Set by the runtime that uses this backend: what ``Task.cancel()`` goes through.
    owner: Any

    def spawn(
        self, async_fn: Callable[..., Coroutine[Any, Any, None]], *args: Any, context: Context
    ) -> Canceller | None: ...

    def call_soon_threadsafe(self, func: Callable[..., object], *args: Any) -> bool: ...

    def is_closed(self) -> bool: ...

    def owns_running_loop(self) -> bool: ...


class AsyncioBackend:
    __slots__ = ("_create_task", "cancelled_exc", "cancels_natively", "loop", "owner")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._create_task = loop.create_task
        self.cancelled_exc: type[BaseException] = asyncio.CancelledError
        self.cancels_natively = True
        self.owner: Any = None

    if sys.version_info >= (3, 11):

        def spawn(
            self,
            async_fn: Callable[..., Coroutine[Any, Any, None]],
            *args: Any,
            context: Context,
        ) -> Canceller | None:
            return self._create_task(async_fn(*args), context=context)

    else:  # pragma: no cover - Python 3.10

        def spawn(
            self,
            async_fn: Callable[..., Coroutine[Any, Any, None]],
            *args: Any,
            context: Context,
        ) -> Canceller | None:
            return context.run(self._create_task, async_fn(*args))

    def call_soon_threadsafe(self, func: Callable[..., object], *args: Any) -> bool:
        try:
            self.loop.call_soon_threadsafe(func, *args)
        except RuntimeError:  # the loop is closed
            return False
        return True

    def is_closed(self) -> bool:
        return self.loop.is_closed()

    def owns_running_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False


class TrioBackend:
    __slots__ = ("cancelled_exc", "cancels_natively", "owner", "token")

    def __init__(self) -> None:
        import trio
        import trio.lowlevel

        self.token = trio.lowlevel.current_trio_token()
        self.cancelled_exc: type[BaseException] = trio.Cancelled
        self.cancels_natively = False
        self.owner: Any = None

    def spawn(
        self, async_fn: Callable[..., Coroutine[Any, Any, None]], *args: Any, context: Context
    ) -> Canceller | None:
        import trio.lowlevel

        trio.lowlevel.spawn_system_task(async_fn, *args, context=context)
        return None

    def call_soon_threadsafe(self, func: Callable[..., object], *args: Any) -> bool:
        try:
            self.token.run_sync_soon(func, *args)
        except RuntimeError:  # trio.RunFinishedError: the run is over
            return False
        return True

    def is_closed(self) -> bool:
        try:
            self.token.run_sync_soon(_nothing)
        except RuntimeError:
            return True
        return False

    def owns_running_loop(self) -> bool:
        import trio.lowlevel

        try:
            return trio.lowlevel.current_trio_token() is self.token
        except RuntimeError:
            return False


def _nothing() -> None:
    pass


def backend_for_running_loop() -> Backend:
    """The primitives for the event loop running in this thread (asyncio or trio)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return TrioBackend()  # raises RuntimeError outside of trio too
    return AsyncioBackend(loop)
