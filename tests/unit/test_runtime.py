"""workers/runtime.py JobContext: throttled progress writes and the cooperative stop."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import cast

import orjson
import pytest

from workers import runtime
from workers.config import Settings
from workers.keys import JobKeys
from workers.runtime import (
    PROGRESS_CHANGE_INTERVAL,
    PROGRESS_MIN_INTERVAL,
    JobContext,
    JobStopped,
)
from workers.store import JobStore
from workers.store.chunks import RESULT_CHUNK_BYTES

CALLS = 100_000


class CountingStore:
    """Stands in for JobStore: counts report() calls and answers ``status``."""

    def __init__(self, status: str = "RUNNING") -> None:
        self.status = status
        self.reports: list[tuple[int | None, str, str | bytes]] = []
        self.chunks: list[int] = []
        self.settings = Settings()

    def report(
        self,
        keys: JobKeys,
        percent: int | None = None,
        message: str = "",
        rows: str | bytes = "",
        *,
        token: str = "",
        chunk: int = 0,
    ) -> str:
        self.reports.append((percent, message, rows))
        self.chunks.append(chunk)
        return self.status


class FakeClock:
    """time.monotonic that moves ``step`` seconds at each call."""

    def __init__(self, step: float) -> None:
        self.now = 1000.0
        self.step = step

    def monotonic(self) -> float:
        self.now += self.step
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def context(store: CountingStore, started: float | None = float("-inf")) -> JobContext:
    """A context of a job that started long ago (its next report is due),
    or at ``started`` (None: now)."""
    return JobContext(cast(JobStore, store), JobKeys("t1", "job-1"), started=started)


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """100 000 calls take one second of (fake) time."""
    clock = FakeClock(step=1.0 / CALLS)
    monkeypatch.setattr(runtime, "time", SimpleNamespace(monotonic=clock.monotonic))
    return clock


def test_fast_progress_loop_is_throttled(fake_clock: FakeClock) -> None:
    store = CountingStore()
    ctx = context(store)

    for step in range(CALLS):
        ctx.progress(step * 100 // CALLS, f"step {step}")

    # A changed percent every 10 ms of (fake) time: one write per 50 ms.
    assert (
        1 / PROGRESS_CHANGE_INTERVAL - 1 <= len(store.reports) <= 1 / PROGRESS_CHANGE_INTERVAL + 1
    )
    assert ctx.writes == len(store.reports)


def test_fast_progress_loop_is_throttled_in_real_time() -> None:
    store = CountingStore()
    ctx = context(store)

    started = time.monotonic()
    for step in range(CALLS):
        ctx.progress(step * 100 // CALLS)
    elapsed = time.monotonic() - started

    assert len(store.reports) <= elapsed / PROGRESS_CHANGE_INTERVAL + 1


def test_unchanged_percent_writes_at_most_every_100_ms(fake_clock: FakeClock) -> None:
    store = CountingStore()
    ctx = context(store)

    for _ in range(CALLS):
        ctx.progress(50, "same")

    assert 1 <= len(store.reports) <= 11  # one second of fake time


def test_a_new_percent_is_written_once_10_ms_have_passed(fake_clock: FakeClock) -> None:
    store = CountingStore()
    ctx = context(store)

    ctx.progress(1)
    ctx.progress(2)  # within 10 ms of the last write: held
    assert [percent for percent, _, _ in store.reports] == [1]
    assert ctx.held_percent() == 2

    fake_clock.advance(PROGRESS_CHANGE_INTERVAL)
    ctx.progress(3)

    assert [percent for percent, _, _ in store.reports] == [1, 3]
    assert ctx.held_percent() is None


def test_a_job_writes_nothing_in_its_first_10_ms_and_then_what_it_reported(
    fake_clock: FakeClock,
) -> None:
    store = CountingStore()
    ctx = context(store, started=None)

    ctx.progress(100, "all of it")  # a short job: its end says as much, no write
    assert store.reports == []
    assert ctx.held_percent() == 100

    fake_clock.advance(PROGRESS_CHANGE_INTERVAL)
    ctx.progress(100)

    assert store.reports == [(100, "Running: all of it", "")]


def test_nothing_is_held_before_the_first_report() -> None:
    assert context(CountingStore()).held_percent() is None


def test_held_back_message_goes_with_the_next_write(fake_clock: FakeClock) -> None:
    store = CountingStore()
    ctx = context(store)

    ctx.progress(10, "step 1")
    ctx.progress(10, "step 2")  # within 100 ms, same percent: held back
    assert len(store.reports) == 1
    fake_clock.advance(PROGRESS_CHANGE_INTERVAL)
    ctx.progress(11)

    assert store.reports[-1] == (11, "Running: step 2", "")


def test_unchanged_percent_is_written_again_after_100_ms(fake_clock: FakeClock) -> None:
    store = CountingStore()
    ctx = context(store)
    ctx.progress(10, "step 1")

    fake_clock.advance(PROGRESS_MIN_INTERVAL * 1.5)
    ctx.progress(10, "step 2")

    assert store.reports == [(10, "Running: step 1", ""), (10, "Running: step 2", "")]


def test_published_rows_go_with_the_next_write() -> None:
    store = CountingStore()
    ctx = context(store)

    ctx.publish([{"step": 0}, {"step": 1}])
    ctx.progress(5)

    assert store.reports == [(5, "", b'[{"step":0},{"step":1}]\n')]


def test_large_unwritten_rows_bypass_the_throttle(fake_clock: FakeClock) -> None:
    store = CountingStore()
    ctx = context(store)
    ctx.progress(10)

    ctx.publish([{"row": i} for i in range(runtime.PUBLISH_FLUSH_ROWS - 1)])
    fake_clock.advance(PROGRESS_CHANGE_INTERVAL)
    ctx.progress(10)  # same percent, within 100 ms, too few rows: held
    assert len(store.reports) == 1

    ctx.publish([{"row": runtime.PUBLISH_FLUSH_ROWS}])
    ctx.progress(10)

    assert len(store.reports) == 2
    rows = store.reports[-1][2]
    assert isinstance(rows, bytes) and rows.startswith(b'[{"row":0},{"row":1}')


def test_percent_is_clamped_to_0_100(fake_clock: FakeClock) -> None:
    store = CountingStore()
    ctx = context(store)

    ctx.progress(-5)
    fake_clock.advance(PROGRESS_CHANGE_INTERVAL)
    ctx.progress(250)

    assert [percent for percent, _, _ in store.reports] == [0, 100]


@pytest.mark.parametrize("status", ["FAILED", "DONE", "INITIALIZED", "missing", "gone"])
def test_progress_raises_job_stopped_unless_running(status: str) -> None:
    store = CountingStore(status=status)
    ctx = context(store)

    with pytest.raises(JobStopped) as stopped:
        ctx.progress(10, "step 1")

    assert stopped.value.status == status
    assert ctx.stop_requested


def test_stopped_job_raises_without_asking_the_store_again() -> None:
    store = CountingStore(status="FAILED")
    ctx = context(store)
    with pytest.raises(JobStopped):
        ctx.progress(10)

    with pytest.raises(JobStopped):
        ctx.progress(20)
    with pytest.raises(JobStopped):
        ctx.check()

    assert len(store.reports) == 1


def test_job_stopped_is_not_an_exception() -> None:
    """A job's own ``except Exception`` must not swallow the stop."""
    assert not issubclass(JobStopped, Exception)


def test_check_raises_job_stopped_when_cancelled() -> None:
    store = CountingStore(status="FAILED")
    ctx = context(store)

    with pytest.raises(JobStopped):
        ctx.check()

    assert store.reports == [(None, "", "")]


def test_check_is_throttled(fake_clock: FakeClock) -> None:
    store = CountingStore()
    ctx = context(store)

    for _ in range(CALLS):
        ctx.check()

    assert 1 <= len(store.reports) <= 11


def test_request_stop_makes_the_next_progress_raise() -> None:
    store = CountingStore()
    ctx = context(store)

    ctx.request_stop("FAILED")

    with pytest.raises(JobStopped):
        ctx.progress(10)
    assert store.reports == []


def test_a_burst_of_rows_over_a_chunk_is_written_a_chunk_at_a_time() -> None:
    """Rows published faster than the writes (megabytes between two) never
    make one chunk of partial rows grow far past RESULT_CHUNK_BYTES."""
    store = CountingStore()
    ctx = context(store)
    rows = [[i, "x" * 100] for i in range(30_000)]  # ~3.4 MB as lines
    ctx.publish(rows)

    ctx.rows_result()

    sizes: dict[int, int] = {}
    for (_percent, _message, payload), chunk in zip(store.reports, store.chunks, strict=True):
        sizes[chunk] = sizes.get(chunk, 0) + len(payload)
    assert len(sizes) >= 3
    # (a part's rows are sized by their average: a chunk may pass by a few rows)
    assert max(sizes.values()) <= RESULT_CHUNK_BYTES * 1.01
    written = [
        row
        for _, _, payload in store.reports
        for line in (payload.encode() if isinstance(payload, str) else payload).splitlines()
        for row in orjson.loads(line)
    ]
    assert written == rows  # every row once, in order
