"""The heartbeat clock: a lapsed heartbeat makes a live job FAILED/TIMED_OUT.

Expiry of the heartbeat key is simulated by deleting it, which is exactly what
Redis does when its TTL runs out; one test lets a real 1 s TTL run out.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.unit.helpers import (
    POLL_TIMEOUT,
    RETENTION,
    TOMBSTONE_TTL,
    MakeJob,
    assert_ttl_close,
    record_hash,
)
from workers.errors import JobExpired
from workers.keys import JobKeys
from workers.states import Status
from workers.store import JobStore


def lapse_heartbeat(client: Any, job: JobKeys) -> int:
    """Let the job's heartbeat expire; returns its stored poll deadline."""
    client.delete(job.heartbeat)
    return int(record_hash(client, job)["deadline"])


@pytest.mark.parametrize("status", ["INITIALIZED", "RUNNING"])
def test_live_job_without_heartbeat_reads_as_timed_out(
    store: JobStore, client: Any, make_job: MakeJob, status: str
) -> None:
    job = make_job(status)
    lapse_heartbeat(client, job)

    record = store.read(job, poll=False)

    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error["code"] == "TIMED_OUT"
    assert record.error["retryable"] is True
    assert record.message == f"Timed out: not polled within {POLL_TIMEOUT} s"


@pytest.mark.parametrize("status", ["INITIALIZED", "RUNNING"])
def test_timed_out_job_finished_at_its_poll_deadline(
    store: JobStore, client: Any, make_job: MakeJob, status: str
) -> None:
    job = make_job(status)
    deadline = lapse_heartbeat(client, job)

    record = store.read(job, poll=False)

    assert record.finished_ms == deadline
    assert record.expires_ms == deadline + RETENTION * 1000
    assert record.deadline_ms is None


def test_poll_does_not_revive_a_timed_out_job(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    lapse_heartbeat(client, job)

    record = store.read(job, poll=True)

    assert record.status is Status.FAILED
    assert not client.exists(job.heartbeat)


def test_report_on_job_without_heartbeat_sees_failed(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    deadline = lapse_heartbeat(client, job)

    assert store.report(job, 50, "Running: halfway") == "FAILED"

    record = store.read(job, poll=False)
    assert record.error is not None
    assert record.error["code"] == "TIMED_OUT"
    assert record.finished_ms == deadline
    assert record.progress == 0  # the report came too late to be written


def test_start_of_job_without_heartbeat_sees_failed(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("INITIALIZED")
    lapse_heartbeat(client, job)

    started = store.start(job)

    assert not started.run
    assert started.status == "FAILED"
    record = store.read(job, poll=False)
    assert record.error is not None
    assert record.error["code"] == "TIMED_OUT"
    assert record.attempt == 0


def test_timeout_happens_exactly_once(store: JobStore, client: Any, make_job: MakeJob) -> None:
    job = make_job("RUNNING")
    lapse_heartbeat(client, job)
    first = store.read(job, poll=False)
    first_event = client.xrevrange(job.events, count=1)

    second = store.read(job, poll=True)

    assert second.finished_ms == first.finished_ms
    assert second.error == first.error
    assert client.xrevrange(job.events, count=1) == first_event


def test_timeout_gives_the_job_its_retention_ttls(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    store.report(job, 10, rows='{"step":0}\n')
    deadline = lapse_heartbeat(client, job)

    record = store.read(job, poll=False)

    ttl_ms = deadline + RETENTION * 1000 - record.now_ms
    assert_ttl_close(client, job.record, ttl_ms)
    assert_ttl_close(client, job.tombstone, ttl_ms + TOMBSTONE_TTL * 1000)
    assert not client.exists(job.partial)


def test_timeout_older_than_retention_reads_as_expired(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    client.delete(job.heartbeat)
    # The deadline passed retention + 1 s ago: the tombstone has 1 s less to live.
    overdue_ms = (RETENTION + 1) * 1000
    client.hset(job.record, "deadline", int(record_hash(client, job)["created"]) - overdue_ms)

    with pytest.raises(JobExpired):
        store.read(job, poll=False)

    assert not client.exists(job.record)
    assert_ttl_close(client, job.tombstone, (TOMBSTONE_TTL - 1) * 1000)


def test_job_without_poll_timeout_never_times_out(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING", poll_timeout=0)

    assert store.report(job, 10) == "RUNNING"
    assert store.read(job, poll=False).status is Status.RUNNING


def test_unpolled_job_times_out(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("INITIALIZED", poll_timeout=1)

    time.sleep(1.1)  # the real heartbeat TTL runs out
    record = store.read(job, poll=True)

    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error["code"] == "TIMED_OUT"


def test_polled_job_does_not_time_out(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("INITIALIZED", poll_timeout=1)

    time.sleep(0.6)
    store.read(job, poll=True)
    time.sleep(0.6)  # 1.2 s after creation, 0.6 s after the poll

    assert store.read(job, poll=False).status is Status.INITIALIZED
