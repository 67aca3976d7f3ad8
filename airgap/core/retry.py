"""One retry policy and one poll loop, for the network (fetch), the cluster API and rollouts.

* :class:`Backoff`: exponential backoff (first wait, doubled per failure, capped), with optional
  jitter; :func:`retry_after` reads a server's ``Retry-After`` (seconds), capped.
* :func:`poll_until`: call ``check`` until it returns a value (not None) or the deadline passes,
  sleeping ``poll`` seconds in between; then raise what ``on_timeout`` makes.
* :class:`Attempts`: a bound on the attempts at one thing (a file): every failed attempt counts,
  whatever it achieved, and every one is followed by the backoff, so a server that sends a little
  and drops the connection is not asked forever, nor in a tight loop.
* :class:`LowSpeed`: curl's ``--speed-limit/--speed-time``: a transfer whose average speed stays
  below ``limit`` bytes/s for ``seconds`` is too slow (a per-read timeout never sees a trickle).

The transports decide *what* is retryable (urllib3's own ``Retry`` is turned off in the cluster
client so that retries, Retry-After and the progress notes happen once, here). Clocks and sleeps
are parameters so tests never wait.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """``first * 2**(failures-1)`` seconds, at most ``cap``, times ``1 + jitter * U[0,1)``."""

    first: float
    cap: float
    jitter: float = 0.0

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        base = min(self.first * 2 ** max(failures - 1, 0), self.cap)
        return float(base * (1 + rand() * self.jitter)) if self.jitter else float(base)


def retry_after(value: str | None, cap: float) -> float | None:
    """A ``Retry-After`` header in seconds, capped at ``cap``; None when absent or not a number."""
    if not value:
        return None
    try:
        return max(0.0, min(float(value), cap))
    except ValueError:
        return None


def poll_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    poll: float,
    on_timeout: Callable[[], Exception],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``check()`` until it returns a value; after ``timeout`` seconds raise ``on_timeout()``.

    ``check`` runs at least once, and once more at the deadline before giving up.
    """
    deadline = clock() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if clock() >= deadline:
            raise on_timeout()
        sleep(poll)


@dataclass
class Attempts:
    """Count failed attempts: ``failed()`` sleeps the backoff and returns True while ``retries``
    allow another attempt, and returns False (no sleep) once they are spent."""

    retries: int
    backoff: Backoff
    sleep: Callable[[float], None] = time.sleep
    failures: int = 0

    def failed(self) -> bool:
        self.failures += 1
        if self.failures > self.retries:
            return False
        self.sleep(self.backoff.delay(self.failures))
        return True


@dataclass
class LowSpeed:
    """Fewer than ``limit * seconds`` bytes within ``seconds`` (since :meth:`start` or the last
    window that was fast enough) is too slow; ``limit`` 0 turns the check off."""

    limit: int
    seconds: float
    clock: Callable[[], float] = time.monotonic
    _since: float = 0.0
    _bytes: int = 0

    def start(self) -> None:
        self._since, self._bytes = self.clock(), 0

    def too_slow(self, got: int) -> bool:
        """Add ``got`` bytes that just arrived; True when the window ended below the limit."""
        if self.limit <= 0:
            return False
        self._bytes += got
        now = self.clock()
        if self._bytes >= self.limit * self.seconds:
            self._since, self._bytes = now, 0  # fast enough over this window: start the next
            return False
        return now - self._since >= self.seconds


__all__ = ["Attempts", "Backoff", "LowSpeed", "poll_until", "retry_after"]
