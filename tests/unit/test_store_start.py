"""JobStore.start (start_job.lua): a worker takes a queued job, once."""

from __future__ import annotations

from typing import Any

from tests.unit.helpers import MAX_RUNTIME, RETENTION, MakeJob, assert_ttl_close, record_hash
from workers.keys import JobKeys
from workers.states import Status
from workers.store import JobStore


def test_start_runs_a_queued_job(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("INITIALIZED", params_json='{"n":5}')

    started = store.start(job)

    assert started.run
    assert started.status == "RUNNING"
    assert started.type == "demo.count"
    assert started.params == {"n": 5}
    assert started.attempt == 1


def test_started_job_is_running_with_attempt_and_start_time(
    store: JobStore, make_job: MakeJob
) -> None:
    job = make_job("INITIALIZED")

    store.start(job)
    record = store.read(job, poll=False)

    assert record.status is Status.RUNNING
    assert record.attempt == 1
    assert record.started_ms is not None
    assert record.created_ms <= record.started_ms <= record.now_ms


def test_second_start_is_skipped(store: JobStore, client: Any, make_job: MakeJob) -> None:
    job = make_job("INITIALIZED")
    store.start(job)
    before = record_hash(client, job)

    started = store.start(job)

    assert not started.run
    assert started.status == "RUNNING"
    assert record_hash(client, job) == before  # attempt and started_ms unchanged


def test_start_of_finished_job_is_skipped(store: JobStore, client: Any, make_job: MakeJob) -> None:
    for status in ("DONE", "FAILED"):
        job = make_job(status)
        before = record_hash(client, job)

        started = store.start(job)

        assert not started.run
        assert started.status == status
        assert record_hash(client, job) == before


def test_start_of_missing_job_does_not_run(store: JobStore, client: Any, keys: JobKeys) -> None:
    started = store.start(keys)

    assert not started.run
    assert started.status == "missing"
    assert client.keys("*") == []


def test_start_of_expired_job_does_not_run(store: JobStore, client: Any, keys: JobKeys) -> None:
    client.set(keys.tombstone, "1", px=5000)

    started = store.start(keys)

    assert not started.run
    assert not client.exists(keys.record)


def test_start_without_poll_timeout_renews_the_runtime_ttl(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("INITIALIZED", poll_timeout=0)
    client.pexpire(job.record, 2000)

    store.start(job)

    assert_ttl_close(client, job.record, (MAX_RUNTIME + RETENTION) * 1000)
