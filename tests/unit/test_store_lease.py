"""Leases: one live execution per job, lost workers requeued, stale writes refused.

Deleting a lease key is exactly what its expiry does when a worker stops
renewing it (killed, frozen, cut off from Redis).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.helpers import MAX_RUNTIME, POLL_TIMEOUT, RETENTION, MakeJob, assert_ttl_close
from workers import keys as keyspace
from workers.keys import JobKeys
from workers.states import ErrorCode, Status
from workers.store import JobStore, Started


def create(store: JobStore, keys: JobKeys, max_attempts: int = 3, poll_timeout: int = 0) -> None:
    created = store.create(
        keys,
        "demo.count",
        '{"n":3}',
        poll_timeout=poll_timeout,
        retention=RETENTION,
        max_runtime=MAX_RUNTIME,
        max_attempts=max_attempts,
    )
    assert created == "created"


def started(store: JobStore, keys: JobKeys, worker: str = "w1") -> Started:
    taken = store.start(keys, worker)
    assert taken.run, taken
    return taken


def lose_lease(client: Any, keys: JobKeys) -> None:
    client.delete(keys.lease)


def test_start_takes_a_lease_with_its_token_and_ttl(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys)

    taken = started(store, keys)

    assert taken.token
    assert client.get(keys.lease) == taken.token
    assert_ttl_close(client, keys.lease, int(store.settings.lease_ttl * 1000))


def test_the_record_keeps_each_execution(store: JobStore, keys: JobKeys) -> None:
    create(store, keys)
    started(store, keys, "node-a:101")

    run = store.read(keys, poll=False).runs

    assert len(run) == 1
    assert (run[0].attempt, run[0].worker, run[0].ended_ms) == (1, "node-a:101", None)


def test_a_second_delivery_while_the_lease_lives_does_nothing(
    store: JobStore, keys: JobKeys
) -> None:
    create(store, keys)
    first = started(store, keys)

    again = store.start(keys, "w2")

    assert (again.run, again.status) == (False, "RUNNING")
    record = store.read(keys, poll=False)
    assert record.attempt == 1
    assert [r.worker for r in record.runs] == ["w1"]
    assert store.report(keys, 10, token=first.token) == "RUNNING"


def test_progress_renews_the_lease(store: JobStore, client: Any, keys: JobKeys) -> None:
    create(store, keys)
    taken = started(store, keys)
    client.pexpire(keys.lease, 500)

    store.report(keys, 5, token=taken.token)

    assert_ttl_close(client, keys.lease, int(store.settings.lease_ttl * 1000))


def test_a_lost_lease_requeues_the_job(store: JobStore, client: Any, keys: JobKeys) -> None:
    create(store, keys)
    started(store, keys)
    lose_lease(client, keys)

    record = store.read(keys, poll=False)

    assert record.status is Status.INITIALIZED
    assert record.message.startswith("Requeued")
    assert record.attempt == 1
    assert record.runs[0].outcome == "lost"
    assert record.runs[0].ended_ms is not None
    assert client.zscore(keyspace.queue_index(store.settings.queue), keys.task_arg()) is not None
    assert [k for k, _ in store.requeued()] == [keys]
    assert not client.exists(keys.lease)


def test_the_next_execution_is_attempt_two_and_never_overlaps(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys)
    started(store, keys, "w1")
    lose_lease(client, keys)

    second = started(store, keys, "w2")

    assert second.attempt == 2
    runs = store.read(keys, poll=False).runs
    assert [(r.attempt, r.worker) for r in runs] == [(1, "w1"), (2, "w2")]
    assert runs[0].ended_ms is not None and runs[0].ended_ms <= runs[1].started_ms
    assert store.requeued() == []  # the start took it off the requeue list


def test_a_restarted_job_keeps_its_progress(store: JobStore, client: Any, keys: JobKeys) -> None:
    create(store, keys)
    first = started(store, keys)
    store.report(keys, 60, token=first.token)
    lose_lease(client, keys)
    second = started(store, keys)

    store.report(keys, 10, token=second.token)

    assert store.read(keys, poll=False).progress == 60


def test_the_last_attempt_lost_fails_worker_lost(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys, max_attempts=2)
    for _ in range(2):
        started(store, keys)
        lose_lease(client, keys)

    record = store.read(keys, poll=False)

    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error["code"] == ErrorCode.WORKER_LOST.value
    assert record.error["retryable"] is True
    assert [r.outcome for r in record.runs] == ["lost", "lost"]
    assert store.requeued() == []
    assert client.zscore(keyspace.DUE, keys.task_arg()) is None


def test_a_stale_execution_cannot_write(store: JobStore, client: Any, keys: JobKeys) -> None:
    create(store, keys)
    old = started(store, keys, "w1")
    lose_lease(client, keys)
    new = started(store, keys, "w2")

    assert store.report(keys, 90, "old", '{"r":1}\n', token=old.token) == "LEASE_LOST"
    assert not store.finish_done(keys, '"old"', token=old.token)
    assert not store.finish_failed(keys, {"code": "JOB_ERROR", "message": "x"}, token=old.token)
    assert not store.fail(keys, ErrorCode.TIME_LIMIT_EXCEEDED, "late", token=old.token)
    record = store.read(keys, poll=False)
    assert (record.status, record.progress) == (Status.RUNNING, 0)
    assert store.partial_rows(keys) == ""

    assert store.finish_done(keys, '"new"', token=new.token)
    assert store.read(keys, poll=False).result_json == '"new"'


def test_the_owner_takes_back_a_lapsed_lease_nobody_took_over(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys)
    taken = started(store, keys)
    lose_lease(client, keys)  # the worker could not reach Redis for a while

    assert store.report(keys, 30, token=taken.token) == "RUNNING"
    assert client.get(keys.lease) == taken.token
    assert store.read(keys, poll=False).attempt == 1


def test_finish_releases_the_lease_and_leaves_the_sweep(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys, poll_timeout=POLL_TIMEOUT)
    taken = started(store, keys)

    assert store.finish_done(keys, "1", token=taken.token)

    assert not client.exists(keys.lease)
    assert client.zscore(keyspace.DUE, keys.task_arg()) is None
    runs = store.read(keys, poll=False).runs
    assert runs[0].outcome == "DONE"


def test_hand_back_requeues_without_waiting_for_the_lease(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys)
    taken = started(store, keys)

    assert not store.hand_back(keys, "someone-else")
    assert store.hand_back(keys, taken.token)

    record = store.read(keys, poll=False)
    assert record.status is Status.INITIALIZED
    assert record.runs[0].outcome == "handed_back"
    assert [k for k, _ in store.requeued()] == [keys]
    assert store.report(keys, 50, token=taken.token) == "INITIALIZED"


def test_requeued_lists_the_type_and_resent_removes(store: JobStore, keys: JobKeys) -> None:
    create(store, keys)
    taken = started(store, keys)
    store.hand_back(keys, taken.token)

    assert store.requeued() == [(keys, "demo.count")]
    store.mark_resent(keys)
    assert store.requeued() == []


# -- the sweep ----------------------------------------------------------------


def make_due(client: Any, keys: JobKeys) -> None:
    client.zadd(keyspace.DUE, {keys.task_arg(): 0})


def test_sweep_times_out_an_unpolled_queued_job(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys, poll_timeout=POLL_TIMEOUT)
    client.delete(keys.heartbeat)  # what its expiry does
    make_due(client, keys)

    assert store.sweep_due() == 1

    assert client.hget(keys.record, "status") == "FAILED"
    assert client.zscore(keyspace.DUE, keys.task_arg()) is None


def test_sweep_requeues_a_job_whose_lease_lapsed(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys)
    started(store, keys)
    lose_lease(client, keys)
    make_due(client, keys)

    store.sweep_due()

    assert client.hget(keys.record, "status") == "INITIALIZED"
    assert [k for k, _ in store.requeued()] == [keys]


def test_sweep_reschedules_a_healthy_job_to_its_next_clock(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys)
    started(store, keys)
    make_due(client, keys)

    store.sweep_due()

    assert client.hget(keys.record, "status") == "RUNNING"
    score = client.zscore(keyspace.DUE, keys.task_arg())
    now_ms = int(client.time()[0]) * 1000
    lease_ms = store.settings.lease_ttl * 1000
    assert now_ms < score <= now_ms + lease_ms + 1000


def test_sweep_leaves_jobs_that_are_not_due(store: JobStore, client: Any, keys: JobKeys) -> None:
    create(store, keys, poll_timeout=POLL_TIMEOUT)
    client.delete(keys.heartbeat)  # lapsed, but its due time (the deadline) is ahead

    assert store.sweep_due() == 0
    assert client.hget(keys.record, "status") == "INITIALIZED"


def test_sweep_forgets_jobs_that_have_gone(store: JobStore, client: Any, keys: JobKeys) -> None:
    create(store, keys, poll_timeout=POLL_TIMEOUT)
    client.delete(*keys.all())
    make_due(client, keys)

    store.sweep_due()

    assert client.zscore(keyspace.DUE, keys.task_arg()) is None


def test_sweep_works_through_more_than_one_batch(store: JobStore, client: Any) -> None:
    jobs = [JobKeys("t1", f"batch-{i}") for i in range(7)]
    for job in jobs:
        create(store, job, poll_timeout=POLL_TIMEOUT)
        client.delete(job.heartbeat)
        make_due(client, job)

    assert store.sweep_due(batch=3) == 7
    assert {client.hget(job.record, "status") for job in jobs} == {"FAILED"}


@pytest.mark.parametrize("status", ["DONE", "FAILED"])
def test_terminal_jobs_are_not_in_the_sweep(
    store: JobStore, client: Any, make_job: MakeJob, status: str
) -> None:
    job = make_job(status)

    assert client.zscore(keyspace.DUE, job.task_arg()) is None


# -- messages lost on the way -------------------------------------------------------


def sent_seconds_ago(client: Any, keys: JobKeys, seconds: float) -> None:
    now_ms = int(client.time()[0]) * 1000
    client.hset(keys.record, "sent", int(now_ms - seconds * 1000))


def test_a_job_whose_message_was_overtaken_is_requeued(store: JobStore, client: Any) -> None:
    lost, later = JobKeys("t1", "fifo-lost"), JobKeys("t1", "fifo-later")
    create(store, lost)
    create(store, later)
    client.rpush(store.settings.queue, "another message")  # the list is not empty
    sent_seconds_ago(client, lost, 30)
    started(store, later)  # sent just now, already started: FIFO says `lost` went first

    assert store.find_lost_messages() == 1
    assert store.requeued() == [(lost, "demo.count")]


def test_a_waiting_job_behind_nothing_in_an_empty_queue_is_requeued(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys)
    sent_seconds_ago(client, keys, 30)

    assert store.find_lost_messages() == 1


def test_recent_or_still_queued_messages_are_not_lost(store: JobStore, client: Any) -> None:
    recent, queued = JobKeys("t1", "fifo-recent"), JobKeys("t1", "fifo-queued")
    create(store, recent)  # sent just now
    create(store, queued)
    sent_seconds_ago(client, queued, 30)
    client.rpush(store.settings.queue, "its message, still waiting")

    assert store.find_lost_messages() == 0
    assert store.requeued() == []


def test_resending_notes_the_new_send_time(store: JobStore, client: Any, keys: JobKeys) -> None:
    create(store, keys)
    sent_seconds_ago(client, keys, 30)
    store.find_lost_messages()

    store.mark_resent(keys)

    assert store.requeued() == []
    assert store.find_lost_messages() == 0  # sent again just now


def test_resending_a_gone_job_writes_nothing(store: JobStore, client: Any, keys: JobKeys) -> None:
    store.mark_resent(keys)

    assert not client.exists(keys.record)
