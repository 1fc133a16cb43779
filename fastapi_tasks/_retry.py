"""Retrying a failed task: the :class:`Retry` policy and its backoff arithmetic.

The delay before attempt ``n + 1`` (after attempt ``n`` failed) is
``min(max_backoff, backoff * multiplier ** (n - 1))``; with ``jitter`` it is drawn uniformly from
the upper half of that, so that tasks failing together do not all retry at the same moment.
Plain arithmetic and :mod:`random`: no dependency.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["Retry"]


def _check_number(name: str, value: object, *, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Retry.{name} must be a number, not {type(value).__name__}")
    if not value >= minimum:  # also refuses NaN
        raise ValueError(f"Retry.{name} must be >= {minimum}, got {value}")


@dataclass(frozen=True)
class Retry:
    """Run a failing task again, up to ``attempts`` times in all.

    ``TaskConfig(retry=Retry(...))`` or ``tasks.task(retry=Retry(...))``. An attempt that raises
    one of the exception classes in ``on`` is followed, after a delay, by another attempt, until
    ``attempts`` have run; the task then ends ``failed`` with the last error, which ``on_error``
    receives (once). A timeout (``FastAPITasksTimeoutError``) is an ``Exception`` too: it is
    retried when ``on`` covers it. The task stays ``running`` between attempts, and the wait is
    cancelled at shutdown unless the task is shielded.

    :param attempts: how many times the function may run in all (1 means no retry).
    :param backoff: seconds to wait after the first failed attempt.
    :param multiplier: each further wait is this many times longer than the previous one.
    :param max_backoff: no wait is longer than this many seconds.
    :param jitter: draw each wait at random between half and all of its computed length.
    :param on: the exception class, or tuple of classes, that is worth another attempt.
    :raises TypeError: if a field has the wrong type.
    :raises ValueError: if a number is out of range.
    """

    attempts: int = 3
    backoff: float = 0.1
    multiplier: float = 2.0
    max_backoff: float = 30.0
    jitter: bool = True
    on: type[Exception] | tuple[type[Exception], ...] = (Exception,)

    def __post_init__(self) -> None:
        attempts = self.attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise TypeError(f"Retry.attempts must be an int, not {type(attempts).__name__}")
        if attempts < 1:
            raise ValueError(f"Retry.attempts must be >= 1 (1 means no retry), got {attempts}")
        _check_number("backoff", self.backoff, minimum=0)
        _check_number("multiplier", self.multiplier, minimum=1)
        _check_number("max_backoff", self.max_backoff, minimum=0)
        if not isinstance(self.jitter, bool):
            raise TypeError(f"Retry.jitter must be a bool, not {type(self.jitter).__name__}")
        on = self.on if isinstance(self.on, tuple) else (self.on,)
        if not on or not all(isinstance(cls, type) and issubclass(cls, Exception) for cls in on):
            raise TypeError(
                "Retry.on must be an Exception subclass or a non-empty tuple of them, "
                f"not {self.on!r}"
            )
        object.__setattr__(self, "on", on)

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether attempt number ``attempt`` (1-based), which raised ``error``, is followed by
        another one."""
        return attempt < self.attempts and isinstance(error, self.on)

    def delay(self, attempt: int, rand: float | None = None) -> float:
        """Seconds to wait after attempt number ``attempt`` (1-based) failed. ``rand`` in
        ``[0, 1)`` replaces the random draw of the jitter (tests pass it)."""
        try:
            raw = self.backoff * self.multiplier ** (attempt - 1)
        except OverflowError:
            raw = math.inf
        wait = min(self.max_backoff, raw)
        if not self.jitter:
            return float(wait)
        if rand is None:
            rand = random.random()  # spreading retries, not cryptography
        return float(wait * (0.5 + rand / 2))
