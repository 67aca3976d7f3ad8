"""One retry policy and one poll loop, for the network (fetch), the cluster API and rollouts.

* :class:`Backoff`: exponential backoff (first wait, doubled per failure, capped), with optional
  jitter; :func:`retry_after` reads a server's ``Retry-After`` (seconds), capped.
* :func:`poll_until`: call ``check`` until it returns a value (not None) or the deadline passes,
  sleeping ``poll`` seconds in between; then raise what ``on_timeout`` makes.

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


__all__ = ["Backoff", "poll_until", "retry_after"]
