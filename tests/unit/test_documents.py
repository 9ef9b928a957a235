"""app/documents.py retry_after(): the advised next poll (docs/api.md §3, GET /v1/jobs/{id})."""

from __future__ import annotations

import itertools

import pytest

from app.documents import MAX_RETRY_AFTER, retry_after
from workers.keys import JobKeys
from workers.states import Status
from workers.store import JobRecord

NOW_MS = 1_800_000_000_000


def job_record(
    status: Status = Status.RUNNING,
    *,
    progress: int = 0,
    elapsed_s: float = 0.0,
    remaining_s: float | None = 60.0,
) -> JobRecord:
    """A record at NOW_MS, started ``elapsed_s`` ago, ``remaining_s`` before its poll deadline."""
    return JobRecord(
        keys=JobKeys("t1", "job-1"),
        type="demo.count",
        params={"n": 100},
        status=status,
        progress=progress,
        message="",
        created_ms=NOW_MS - int(elapsed_s * 1000) - 1000,
        poll_timeout=60 if remaining_s is not None else 0,
        retention=3600,
        max_runtime=14400,
        attempt=1 if status is not Status.INITIALIZED else 0,
        now_ms=NOW_MS,
        started_ms=NOW_MS - int(elapsed_s * 1000) if status is not Status.INITIALIZED else None,
        deadline_ms=NOW_MS + int(remaining_s * 1000) if remaining_s is not None else None,
    )


@pytest.mark.parametrize(
    "record",
    [
        job_record(Status.INITIALIZED, remaining_s=0.4),
        job_record(progress=99, elapsed_s=0.01),
        job_record(progress=50, elapsed_s=0.0),
        job_record(progress=10, elapsed_s=30, remaining_s=-5),  # the deadline has passed
        job_record(progress=10, elapsed_s=30, remaining_s=1),
    ],
)
def test_retry_after_is_at_least_one_second(record: JobRecord) -> None:
    assert retry_after(record) >= 1


def test_retry_after_is_never_more_than_half_the_poll_window() -> None:
    progresses = [0, 1, 10, 50, 90, 99]
    elapsed = [0.0, 0.5, 5, 60, 600, 7200]
    remaining = [2.0, 2.5, 3, 5, 9, 19, 30, 60, 600]
    for progress, elapsed_s, remaining_s in itertools.product(progresses, elapsed, remaining):
        record = job_record(progress=progress, elapsed_s=elapsed_s, remaining_s=remaining_s)

        advice = retry_after(record)

        assert 1 <= advice <= remaining_s / 2, (progress, elapsed_s, remaining_s, advice)


@pytest.mark.parametrize("remaining_s", [2.0, 3.0, 4.5, 60.0])
def test_retry_after_of_queued_job_is_within_half_the_poll_window(remaining_s: float) -> None:
    advice = retry_after(job_record(Status.INITIALIZED, remaining_s=remaining_s))

    assert 1 <= advice <= remaining_s / 2


def test_retry_after_is_shorter_when_progress_is_near_100() -> None:
    early = retry_after(job_record(progress=10, elapsed_s=30))
    late = retry_after(job_record(progress=95, elapsed_s=30))

    assert late < early
    assert late == 1  # 30 s for 95 %: the last 5 % take about 1.6 s


def test_retry_after_follows_the_progress_rate() -> None:
    # 20 s for 50 %: about 20 s left, but advice is capped.
    assert retry_after(job_record(progress=50, elapsed_s=20)) == MAX_RETRY_AFTER
    # 8 s for 80 %: about 2 s left.
    assert retry_after(job_record(progress=80, elapsed_s=8)) == 2


def test_retry_after_without_a_poll_deadline_is_capped() -> None:
    record = job_record(progress=1, elapsed_s=3600, remaining_s=None)

    assert 1 <= retry_after(record) <= MAX_RETRY_AFTER


def test_retry_after_is_an_integer() -> None:
    assert isinstance(retry_after(job_record(progress=33, elapsed_s=7.7, remaining_s=13.3)), int)
