"""The terminal transitions: finish_done, finish_failed and fail()."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.unit.helpers import (
    RETENTION,
    TOMBSTONE_TTL,
    MakeJob,
    assert_ttl_close,
    jobgate_ttls,
    record_hash,
)
from workers import keys as keyspace
from workers.keys import JobKeys
from workers.states import ErrorCode, Status
from workers.store import JobStore

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


# -- finish_done --------------------------------------------------------------


def test_finish_done_makes_job_done_at_100(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")
    store.report(job, 40)

    assert store.finish_done(job, '{"answer":42}') is True

    record = store.read(job, poll=False)
    assert record.status is Status.DONE
    assert record.progress == 100
    assert record.error is None


def test_done_message_says_how_long_it_ran(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")

    store.finish_done(job, "[]")
    record = store.read(job, poll=False)

    assert re.fullmatch(r"Done in \d+\.\d{3} seconds", record.message)
    assert record.finished_ms is not None
    assert record.started_ms is not None
    seconds = (record.finished_ms - record.started_ms) / 1000
    assert record.message == f"Done in {seconds:.3f} seconds"


def test_done_message_counts_from_the_start(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    started = int(record_hash(client, job)["started"])
    client.hset(job.record, "started", started - 3519)

    store.finish_done(job, "[]")

    message = store.read(job, poll=False).message
    assert message.startswith("Done in 3.5"), message


def test_finish_done_stores_the_result(store: JobStore, client: Any, make_job: MakeJob) -> None:
    job = make_job("RUNNING")

    store.finish_done(job, '{"columns":["step"],"rows":[[0]]}')

    assert client.get(job.result) == '{"columns":["step"],"rows":[[0]]}'
    assert record_hash(client, job)["result_bytes"] == str(len('{"columns":["step"],"rows":[[0]]}'))


def test_done_job_expires_after_retention(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")

    store.finish_done(job, "[]")
    record = store.read(job, poll=False)

    assert record.finished_ms is not None
    assert record.expires_ms == record.finished_ms + RETENTION * 1000
    assert record.deadline_ms is None


def test_done_job_keys_live_for_retention(store: JobStore, client: Any, make_job: MakeJob) -> None:
    job = make_job("RUNNING")

    store.finish_done(job, "[]")

    assert_ttl_close(client, job.record, RETENTION * 1000)
    assert_ttl_close(client, job.result, RETENTION * 1000)
    assert_ttl_close(client, job.tombstone, (RETENTION + TOMBSTONE_TTL) * 1000)


def test_finish_done_deletes_heartbeat_and_partial(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    store.report(job, 10, rows='{"step":0}\n')
    assert client.exists(job.heartbeat, job.partial) == 2

    store.finish_done(job, "[]")

    assert client.exists(job.heartbeat, job.partial) == 0


def test_finished_job_leaves_no_key_without_ttl(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    store.report(job, 10, "Running: step 1", '{"step":0}\n')

    store.finish_done(job, "[]")

    ttls = jobgate_ttls(client)
    # Out of the queue (its empty sorted set is gone), still in the listing.
    listing = {
        keyspace.tenant_index(job.tenant),
        keyspace.tenant_listed(job.tenant),
        keyspace.SEQUENCE,
        keyspace.STATS,
    }
    histograms = {keyspace.JOB_QUEUE_WAIT, keyspace.JOB_DURATION}
    assert set(ttls) == {job.record, job.result, job.tombstone, *listing, *histograms}
    assert all(ttl > 0 for ttl in ttls.values()), ttls


def test_finish_done_after_cancel_drops_the_result(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    store.fail(job, ErrorCode.CANCELLED_BY_USER, "Cancelled by the user")

    assert store.finish_done(job, '{"answer":42}') is False

    assert not client.exists(job.result)
    record = store.read(job, poll=False, inline_max=None)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error["code"] == "CANCELLED_BY_USER"
    assert record.result_json is None
    assert record.result_bytes is None


def test_finish_done_after_timeout_drops_the_result(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    client.delete(job.heartbeat)

    assert store.finish_done(job, '{"answer":42}') is False

    assert not client.exists(job.result)
    assert store.read(job, poll=False).status is Status.FAILED


def test_finish_done_of_queued_job_is_refused(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("INITIALIZED")

    assert store.finish_done(job, "[]") is False

    assert record_hash(client, job)["status"] == "INITIALIZED"
    assert not client.exists(job.result)


def test_finish_done_of_missing_job_is_refused(store: JobStore, client: Any, keys: JobKeys) -> None:
    assert store.finish_done(keys, "[]") is False
    assert client.keys("*") == []


# -- finish_failed ------------------------------------------------------------


def job_error(**extra: Any) -> dict[str, Any]:
    return {"code": "JOB_ERROR", "message": "failed at step 3", "retryable": False, **extra}


def test_finish_failed_stores_the_error(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")

    assert store.finish_failed(job, job_error()) is True

    record = store.read(job, poll=False)
    assert record.status is Status.FAILED
    assert record.message == "failed at step 3"
    assert record.error is not None
    assert set(record.error) == {"id", "code", "message", "retryable"}
    assert ULID.match(record.error["id"])
    assert record.error["code"] == "JOB_ERROR"
    assert record.error["message"] == "failed at step 3"
    assert record.error["retryable"] is False


def test_finish_failed_keeps_error_details(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")

    store.finish_failed(job, job_error(details={"exception": "ValueError"}))

    error = store.read(job, poll=False).error
    assert error is not None
    assert error["details"] == {"exception": "ValueError"}


def test_finish_failed_keeps_progress(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")
    store.report(job, 30)

    store.finish_failed(job, job_error())

    assert store.read(job, poll=False).progress == 30


def test_failed_job_keys_live_for_retention(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    store.report(job, 10, rows='{"step":0}\n')

    store.finish_failed(job, job_error())

    assert_ttl_close(client, job.record, RETENTION * 1000)
    assert_ttl_close(client, job.tombstone, (RETENTION + TOMBSTONE_TTL) * 1000)
    assert client.exists(job.heartbeat, job.partial, job.result) == 0


def test_finish_failed_after_cancel_keeps_the_cancel(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")
    store.fail(job, ErrorCode.CANCELLED_BY_USER, "Cancelled by the user")

    assert store.finish_failed(job, job_error()) is False

    error = store.read(job, poll=False).error
    assert error is not None
    assert error["code"] == "CANCELLED_BY_USER"


# -- fail() -------------------------------------------------------------------


@pytest.mark.parametrize("status", ["INITIALIZED", "RUNNING"])
def test_fail_makes_a_live_job_failed(store: JobStore, make_job: MakeJob, status: str) -> None:
    job = make_job(status)

    assert store.fail(job, ErrorCode.CANCELLED_BY_USER, "Cancelled by the user") is True

    record = store.read(job, poll=False)
    assert record.status is Status.FAILED
    assert record.message == "Cancelled by the user"
    assert record.finished_ms is not None
    assert record.expires_ms == record.finished_ms + RETENTION * 1000
    assert record.deadline_ms is None


def test_fail_error_has_id_code_message_retryable(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")

    store.fail(job, ErrorCode.CANCELLED_BY_USER, "Cancelled by the user")

    error = store.read(job, poll=False).error
    assert error is not None
    assert set(error) == {"id", "code", "message", "retryable"}
    assert ULID.match(error["id"])
    assert error["code"] == "CANCELLED_BY_USER"
    assert error["message"] == "Cancelled by the user"
    assert error["retryable"] is False


@pytest.mark.parametrize("code", list(ErrorCode))
def test_fail_error_is_retryable_as_its_code_says(
    store: JobStore, make_job: MakeJob, code: ErrorCode
) -> None:
    job = make_job("RUNNING")

    store.fail(job, code, "stopped")

    error = store.read(job, poll=False).error
    assert error is not None
    assert error["code"] == code.value
    assert error["retryable"] is code.retryable


@pytest.mark.parametrize("status", ["DONE", "FAILED"])
def test_fail_on_terminal_job_changes_nothing(
    store: JobStore, client: Any, make_job: MakeJob, status: str
) -> None:
    job = make_job(status)
    before = record_hash(client, job)
    keys_before = set(jobgate_ttls(client))
    event_before = client.xrevrange(job.events, count=1)
    result_before = client.get(job.result)

    assert store.fail(job, ErrorCode.TIME_LIMIT_EXCEEDED, "too late") is False

    assert record_hash(client, job) == before
    assert set(jobgate_ttls(client)) == keys_before
    assert client.xrevrange(job.events, count=1) == event_before
    assert client.get(job.result) == result_before


def test_fail_on_missing_job_creates_nothing(store: JobStore, client: Any, keys: JobKeys) -> None:
    assert store.fail(keys, ErrorCode.CANCELLED_BY_USER, "Cancelled by the user") is False
    assert client.keys("*") == []
