"""The submit's request id on the job (create_job.lua, start_job.lua), and the
workers' heartbeats per queue, on fakeredis with the real Lua."""

from __future__ import annotations

from typing import Any

from tests.unit.helpers import MAX_RUNTIME, RETENTION, MakeJob
from workers.keys import JobKeys
from workers.store import CreateOutcome, JobStore


def create(store: JobStore, keys: JobKeys, request_id: str = "") -> None:
    created = store.create(
        keys,
        "demo.count",
        '{"n":3}',
        poll_timeout=60,
        retention=RETENTION,
        max_runtime=MAX_RUNTIME,
        request_id=request_id,
    )
    assert created.outcome is CreateOutcome.CREATED


def test_the_request_id_of_the_submit_reaches_the_worker_at_start(
    store: JobStore, keys: JobKeys
) -> None:
    create(store, keys, request_id="trace-42")

    started = store.start(keys)

    assert started.run
    assert started.request_id == "trace-42"


def test_a_requeued_job_still_carries_its_request_id(
    store: JobStore, keys: JobKeys, client: Any
) -> None:
    create(store, keys, request_id="trace-42")
    first = store.start(keys)
    assert store.hand_back(keys, first.token)

    second = store.start(keys)

    assert second.attempt == 2
    assert second.request_id == "trace-42"


def test_a_job_created_without_a_request_id_starts_with_none(
    store: JobStore, make_job: MakeJob, client: Any
) -> None:
    job = make_job("INITIALIZED")

    started = store.start(job)

    assert started.request_id == ""
    assert client.hget(job.record, "rid") is None


def test_workers_are_seen_per_queue_they_consume(store: JobStore) -> None:
    store.mark_worker_alive("both@h", queues=["jobs", "jobs.control"])
    store.mark_worker_alive("sweeper@h", queues=["jobs.control"])

    assert sorted(store.workers_seen()) == ["both@h", "sweeper@h"]
    assert store.workers_seen(queue="jobs") == ["both@h"]
    assert sorted(store.workers_seen(queue="jobs.control")) == ["both@h", "sweeper@h"]
    assert store.workers_seen(queue="nobody") == []
