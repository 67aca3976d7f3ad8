"""core/retry.py: the one backoff policy and poll loop (no real waiting: fake clock and sleep)."""

from __future__ import annotations

import pytest

from airgap.core.retry import Attempts, Backoff, LowSpeed, poll_until, retry_after
from airgap.errors import ClusterError


def test_backoff_doubles_caps_and_jitters() -> None:
    b = Backoff(0.5, 3.0)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    j = Backoff(1.0, 8.0, jitter=0.25)
    assert j.delay(2, rand=lambda: 0.0) == 2.0 and j.delay(2, rand=lambda: 0.999) == pytest.approx(2.4995)


@pytest.mark.parametrize(
    ("value", "want"), [(None, None), ("", None), ("x", None), ("-3", 0.0), ("7", 7.0), ("99", 30.0)]
)
def test_retry_after_is_read_in_seconds_and_capped(value: str | None, want: float | None) -> None:
    assert retry_after(value, 30.0) == want


def test_poll_until_returns_the_first_value_and_sleeps_in_between() -> None:
    answers = iter([None, None, ["istiod"]])
    slept: list[float] = []
    now = [0.0]
    got = poll_until(
        lambda: next(answers), timeout=10, poll=2, on_timeout=lambda: ClusterError("late"),
        sleep=lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)), clock=lambda: now[0],
    )  # fmt: skip
    assert got == ["istiod"] and slept == [2, 2]


def test_poll_until_raises_after_the_deadline_having_checked_at_it() -> None:
    calls = []
    now = [0.0]

    def check() -> None:
        calls.append(now[0])

    with pytest.raises(ClusterError, match="not Ready after 5s"):
        poll_until(
            check, timeout=5, poll=2, on_timeout=lambda: ClusterError("not Ready after 5s"),
            sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0],
        )  # fmt: skip
    assert calls == [0.0, 2.0, 4.0, 6.0]


def test_attempts_count_every_failure_and_back_off_each_time() -> None:
    slept: list[float] = []
    a = Attempts(2, Backoff(0.5, 3.0), slept.append)
    assert [a.failed(), a.failed(), a.failed()] == [True, True, False]
    assert slept == [0.5, 1.0]  # no sleep once the retries are spent


def test_low_speed_is_a_window_below_the_limit() -> None:
    now = [0.0]
    s = LowSpeed(100, 10.0, lambda: now[0])
    s.start()
    now[0] = 9.0
    assert not s.too_slow(500)  # 500 bytes in 9 s: the window is not over yet
    now[0] = 10.5
    assert not s.too_slow(600)  # 1100 bytes within the window: fast enough, a new window starts
    now[0] = 21.0
    assert s.too_slow(1)  # 1 byte in 10.5 s
    assert not LowSpeed(0, 1.0, lambda: now[0]).too_slow(0)  # limit 0: off
