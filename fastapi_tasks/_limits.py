"""Concurrency limits: FIFO slots for ``add_tasks(async_limit=N)`` and ``TaskConfig(limit=N)``.

A :class:`Slots` counts the tasks holding one of its slots. A task that finds none free queues a
:class:`Waiter`; a slot given back is handed straight to the first waiter (the queue is never
overtaken), so tasks start in the order they were scheduled. Tasks of one name share one
:class:`Slots`; each task brings its own limit, and the first waiter starts once fewer tasks than
*its* limit hold a slot. Loop thread only; no locks.
"""

from __future__ import annotations

from collections import deque

import anyio

__all__ = ["Slots", "Waiter"]


class Waiter:
    """One task waiting for a slot: :attr:`granted` is set (and :attr:`event`) once it holds
    one."""

    __slots__ = ("event", "granted", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.granted = False
        self.event: anyio.Event | None = None

    async def wait(self) -> None:
        if not self.granted:
            if self.event is None:
                self.event = anyio.Event()
            await self.event.wait()

    def _grant(self) -> None:
        self.granted = True
        if self.event is not None:
            self.event.set()


class Slots:
    """A FIFO counting semaphore without an owner check (the controlled run gives back what it
    took)."""

    __slots__ = ("held", "waiters")

    def __init__(self) -> None:
        #: Slots held right now.
        self.held = 0
        self.waiters: deque[Waiter] = deque()

    def try_take(self, limit: int) -> bool:
        """Take a slot now if one is free and nobody waits before us."""
        if not self.waiters and self.held < limit:
            self.held += 1
            return True
        return False

    def queue(self, limit: int) -> Waiter:
        """Join the queue; the waiter is granted a slot once the ones before it got theirs and
        fewer than ``limit`` slots are held."""
        waiter = Waiter(limit)
        self.waiters.append(waiter)
        return waiter

    def give_back(self) -> None:
        """Free a slot and hand slots to waiters at the head of the queue."""
        self.held -= 1
        self._wake()

    def withdraw(self, waiter: Waiter) -> None:
        """``waiter`` no longer wants a slot (its task was cancelled): leave the queue, or give
        back the slot it was just granted."""
        if waiter.granted:
            self.give_back()
            return
        try:
            self.waiters.remove(waiter)
        except ValueError:  # pragma: no cover - already left
            return
        self._wake()  # the head may have been the one blocking smaller-limit waiters

    def _wake(self) -> None:
        waiters = self.waiters
        while waiters and self.held < waiters[0].limit:
            self.held += 1
            waiters.popleft()._grant()
