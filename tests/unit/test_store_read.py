"""JobStore.read (read_job.lua): 404/410, the poll that renews, the inline result."""

from __future__ import annotations

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
from workers.errors import JobExpired, JobNotFound
from workers.keys import JobKeys
from workers.states import Status
from workers.store import JobStore


def test_read_of_unknown_job_is_not_found(store: JobStore, keys: JobKeys) -> None:
    with pytest.raises(JobNotFound):
        store.read(keys, poll=True)


def test_read_of_unknown_job_creates_no_key(store: JobStore, client: Any, keys: JobKeys) -> None:
    with pytest.raises(JobNotFound):
        store.read(keys, poll=True)

    assert client.keys("*") == []


def test_read_of_tombstone_only_is_expired(store: JobStore, client: Any, keys: JobKeys) -> None:
    client.set(keys.tombstone, "1", px=TOMBSTONE_TTL * 1000)

    with pytest.raises(JobExpired):
        store.read(keys, poll=True)


def test_read_of_queued_job_returns_its_record(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("INITIALIZED", params_json='{"n":7}')

    record = store.read(job, poll=False)

    assert record.job_id == job.job_id
    assert record.type == "demo.count"
    assert record.params == {"n": 7}
    assert record.status is Status.INITIALIZED
    assert record.progress == 0
    assert record.poll_timeout == POLL_TIMEOUT
    assert record.retention == RETENTION
    assert record.started_ms is None
    assert record.finished_ms is None
    assert record.created_ms <= record.now_ms


def test_poll_renews_heartbeat_ttl(store: JobStore, client: Any, make_job: MakeJob) -> None:
    job = make_job("RUNNING")
    client.pexpire(job.heartbeat, 500)  # 9.5 s have passed since the last poll

    store.read(job, poll=True)

    assert_ttl_close(client, job.heartbeat, POLL_TIMEOUT * 1000)


def test_poll_moves_the_deadline(store: JobStore, client: Any, make_job: MakeJob) -> None:
    job = make_job("RUNNING")
    client.hset(job.record, "deadline", 1000)

    record = store.read(job, poll=True)

    assert record.deadline_ms == record.now_ms + POLL_TIMEOUT * 1000
    assert record_hash(client, job)["deadline"] == str(record.deadline_ms)


def test_poll_renews_the_ttl_of_the_job_keys(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("INITIALIZED")
    client.pexpire(job.record, 2000)
    client.pexpire(job.tombstone, 3000)

    store.read(job, poll=True)

    live_ms = (POLL_TIMEOUT + RETENTION) * 1000
    assert_ttl_close(client, job.record, live_ms)
    assert_ttl_close(client, job.tombstone, live_ms + TOMBSTONE_TTL * 1000)


def test_read_without_poll_leaves_heartbeat_alone(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    client.pexpire(job.heartbeat, 500)

    store.read(job, poll=False)

    assert 0 < client.pttl(job.heartbeat) <= 500


def test_read_without_poll_leaves_deadline_alone(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    stored_deadline = int(record_hash(client, job)["deadline"]) - 5000
    client.hset(job.record, "deadline", stored_deadline)

    record = store.read(job, poll=False)

    assert record.deadline_ms == stored_deadline


def test_poll_of_finished_job_recreates_no_heartbeat(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("DONE")

    record = store.read(job, poll=True)

    assert record.deadline_ms is None
    assert not client.exists(job.heartbeat)


def test_result_is_inline_when_it_fits(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("DONE")  # result '{"answer":42}', 13 bytes

    record = store.read(job, poll=True, inline_max=13)

    assert record.result_bytes == 13
    assert record.result_json == '{"answer":42}'


def test_result_is_not_inline_when_over_the_limit(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("DONE")

    record = store.read(job, poll=True, inline_max=12)

    assert record.result_bytes == 13
    assert record.result_json is None


def test_result_is_always_inline_without_a_limit(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("DONE")

    assert store.read(job, poll=True, inline_max=None).result_json == '{"answer":42}'


def test_inline_limit_counts_bytes_not_characters(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")
    store.finish_done(job, '"é"')  # 3 characters, 4 bytes in UTF-8

    assert store.read(job, poll=True, inline_max=3).result_json is None
    assert store.read(job, poll=True, inline_max=4).result_json == '"é"'


def test_running_job_has_no_result(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")

    assert store.read(job, poll=True).result_json is None


def test_last_event_id_of_a_fresh_job_is_zero(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("INITIALIZED")

    assert store.read(job, poll=True).last_event_id == "0-0"


def test_last_event_id_is_the_latest_stream_entry(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    store.read(job, poll=False, watch=True)  # someone waits: the stream exists
    store.report(job, 40, "Running: step 4")
    [(latest_id, _fields)] = client.xrevrange(job.events, count=1)

    assert store.read(job, poll=True, watch=True).last_event_id == latest_id
