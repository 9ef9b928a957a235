"""workers/runtime.py ``patiently``: retries while Redis is away, then gives up.

Tenacity's clock and sleep (and the runtime's clock) are replaced by a fake
clock that a sleep moves: the 60 s of patience pass without waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest
import tenacity
import tenacity.nap

from workers import runtime
from workers.errors import BackendUnavailable
from workers.runtime import REDIS_PATIENCE, patiently


class SleepClock:
    """time.monotonic and time.sleep for tenacity: only a sleep moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SleepClock:
    fake = SleepClock()
    fake_time = SimpleNamespace(monotonic=fake.monotonic, sleep=fake.sleep)
    monkeypatch.setattr(tenacity, "time", fake_time)
    monkeypatch.setattr(tenacity.nap, "time", fake_time)
    monkeypatch.setattr(runtime, "time", fake_time)
    return fake


def failing(times: int, then: str = "ok") -> tuple[Callable[[], str], list[int]]:
    """A call that raises BackendUnavailable ``times`` times, then returns ``then``."""
    calls: list[int] = []

    def call() -> str:
        calls.append(len(calls) + 1)
        if len(calls) <= times:
            raise BackendUnavailable(f"down (call {len(calls)})")
        return then

    return call, calls


def test_a_call_that_succeeds_after_retries_returns_its_value(clock: SleepClock) -> None:
    call, calls = failing(times=3)

    value = patiently(call, "start the job")

    assert value == "ok"
    assert len(calls) == 4
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4])


def test_waits_double_from_a_tenth_of_a_second_up_to_two_seconds(clock: SleepClock) -> None:
    call, _ = failing(times=7)

    patiently(call, "start the job")

    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])


def test_gives_up_rather_than_sleep_past_its_patience_and_reraises_the_last_error(
    clock: SleepClock,
) -> None:
    call, calls = failing(times=1_000)

    with pytest.raises(BackendUnavailable, match=r"down \(call 34\)"):
        patiently(call, "store the result")

    # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 = 3.1 s, then 2 s waits while one more fits in 60 s.
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6] + [2.0] * 28)
    assert sum(clock.sleeps) <= REDIS_PATIENCE
    assert len(calls) == 34


def test_each_wait_is_announced_with_what_it_waits_for(
    clock: SleepClock, caplog: pytest.LogCaptureFixture
) -> None:
    call, _ = failing(times=2)

    patiently(call, "end the job")

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "cannot end the job yet, retrying in 0.1 s: down (call 1)",
        "cannot end the job yet, retrying in 0.2 s: down (call 2)",
    ]


def test_a_call_that_answers_at_once_is_called_once(clock: SleepClock) -> None:
    call, calls = failing(times=0, then="first try")

    assert patiently(call, "start the job") == "first try"

    assert (len(calls), clock.sleeps) == (1, [])


class SlowFirstTry:
    """The first try fails after ``seconds`` (a Redis that hangs until the
    socket timeout), every later one at once."""

    def __init__(self, clock: SleepClock, seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls == 1:
            self.clock.now += self.seconds
        raise BackendUnavailable(f"down (call {self.calls})")


def test_patience_counts_from_the_first_try_even_a_slow_one(clock: SleepClock) -> None:
    call = SlowFirstTry(clock, seconds=30.0)

    with pytest.raises(BackendUnavailable):
        patiently(call, "start the job")

    # 30 s spent in the first try; then 0.1 ... 1.6 (3.1 s) and 2 s waits while one more
    # fits in the 60 s: 13 of them (3.1 + 26 = 29.1; one more would end at 61.1).
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6] + [2.0] * 13)
    assert clock.now - 1000.0 <= REDIS_PATIENCE


def test_any_other_error_is_raised_at_once(clock: SleepClock) -> None:
    calls: list[int] = []

    def broken() -> str:
        calls.append(1)
        raise ValueError("not a Redis problem")

    with pytest.raises(ValueError, match="not a Redis problem"):
        patiently(broken, "start the job")

    assert (len(calls), clock.sleeps) == (1, [])
