"""Leases: one live execution per job, lost workers requeued, stale writes refused.

Deleting a lease key is exactly what its expiry does when a worker stops
renewing it (killed, frozen, cut off from Redis).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import tests.support.jobs  # noqa: F401 - the type test.report and its queue "reports"
from tests.unit.helpers import MAX_RUNTIME, POLL_TIMEOUT, RETENTION, MakeJob, assert_ttl_close
from workers import broker
from workers import keys as keyspace
from workers.broker import UNACKED, UNACKED_INDEX, queue_lists
from workers.config import Settings
from workers.keys import JobKeys
from workers.limits import LOST_CONFIRM_MS, LOST_MESSAGE_GRACE_MS, MAX_LOST_RESENDS
from workers.queues import job_queue
from workers.registry import DEFAULT_PRIORITY
from workers.states import ErrorCode, Status
from workers.store import CreateOutcome, JobStore, Started


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
    assert created.outcome is CreateOutcome.CREATED


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
    assert (
        client.zscore(keyspace.queue_index(store.settings.queue, DEFAULT_PRIORITY), keys.task_arg())
        is not None
    )
    assert [r.keys for r in store.requeued()] == [keys]
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
    assert [r.keys for r in store.requeued()] == [keys]
    assert store.report(keys, 50, token=taken.token) == "INITIALIZED"


def test_requeued_lists_the_type_and_resent_removes(store: JobStore, keys: JobKeys) -> None:
    create(store, keys)
    taken = started(store, keys)
    store.hand_back(keys, taken.token)

    assert store.requeued() == [
        (keys, "demo.count", 2, store.settings.queue, DEFAULT_PRIORITY)
    ]  # its second message
    store.mark_resent(keys, 2)
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
    assert [r.keys for r in store.requeued()] == [keys]


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


def kombu_message(message_id: str) -> str:
    """A message as kombu's Redis transport stores it (the part that matters):
    the job's task id, the same for all its messages, and the message's own
    name in its header."""
    task_id = message_id.rsplit(":", 1)[0]
    return json.dumps(
        {
            "body": "W10=",
            "headers": {"id": task_id, broker.MESSAGE_HEADER: message_id},
            "properties": {"correlation_id": task_id},
        }
    )


def look_twice(store: JobStore, client: Any, keys: JobKeys) -> int:
    """Two sweeps' looks, the second past the confirmation delay."""
    assert store.find_lost_messages() == 0  # the first look only suspects
    absent = int(client.hget(keys.record, "absent"))
    client.hset(keys.record, "absent", absent - LOST_CONFIRM_MS)
    return store.find_lost_messages()


def test_a_waiting_job_whose_message_is_in_the_queue_is_not_lost(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys)
    sent_seconds_ago(client, keys, 600)  # behind a long backlog
    lists = queue_lists(store.settings.queue)
    client.lpush(lists[-1], kombu_message(keys.message_id(1)))
    client.lpush(lists[-1], *[kombu_message(f"t1:other-{n}:1") for n in range(2500)])

    assert store.find_lost_messages() == 0
    assert store.find_lost_messages() == 0
    assert client.hget(keys.record, "absent") is None
    assert store.requeued() == []


def test_a_message_found_nowhere_twice_is_lost_and_sent_again_first(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys)
    sent_seconds_ago(client, keys, 30)
    # Another message of the job (an old one) does not stand for the current one.
    client.hset(keys.record, "msgs", 2)
    client.lpush(queue_lists(store.settings.queue)[-1], kombu_message(keys.message_id(1)))

    assert look_twice(store, client, keys) == 1
    assert store.requeued() == [(keys, "demo.count", 3, store.settings.queue, DEFAULT_PRIORITY)]


def test_a_suspect_message_found_again_is_not_lost(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys)
    sent_seconds_ago(client, keys, 30)
    assert store.find_lost_messages() == 0  # in neither place for a moment
    assert client.hget(keys.record, "absent") is not None
    client.hset(keys.record, "absent", 1)  # long ago
    client.lpush(queue_lists(store.settings.queue)[0], kombu_message(keys.message_id(1)))

    assert store.find_lost_messages() == 0
    assert client.hget(keys.record, "absent") is None


def test_a_message_held_unstarted_by_a_dead_worker_is_lost(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys)
    sent_seconds_ago(client, keys, 600)
    delivered = time.time() - LOST_MESSAGE_GRACE_MS / 1000 - store.settings.shutdown_grace - 5
    client.hset(UNACKED, "tag-1", json.dumps([json.loads(kombu_message(keys.message_id(1)))]))
    client.zadd(UNACKED_INDEX, {"tag-1": delivered})

    assert look_twice(store, client, keys) == 1


def test_a_message_just_delivered_to_a_worker_is_not_lost(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys)
    sent_seconds_ago(client, keys, 600)
    client.hset(UNACKED, "tag-1", json.dumps([json.loads(kombu_message(keys.message_id(1)))]))
    client.zadd(UNACKED_INDEX, {"tag-1": time.time()})

    assert store.find_lost_messages() == 0
    assert store.find_lost_messages() == 0
    assert client.hget(keys.record, "absent") is None


def test_a_message_behind_more_than_one_look_reads_is_not_judged(
    store: JobStore, client: Any, keys: JobKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker, "SCAN_MAX", 300)
    create(store, keys)
    sent_seconds_ago(client, keys, 600)
    newest = queue_lists(store.settings.queue)[-1]
    client.lpush(newest, *[kombu_message(f"t1:older-{n}:1") for n in range(400)])
    client.lpush(newest, kombu_message(keys.message_id(1)))

    assert store.broker is not None
    assert store.broker.find([keys.message_id(1)]) == {keys.message_id(1): "unknown"}
    assert store.find_lost_messages() == 0
    assert client.hget(keys.record, "absent") is None  # not even suspect


def test_a_requeued_job_is_not_looked_for(store: JobStore, client: Any, keys: JobKeys) -> None:
    create(store, keys)
    taken = started(store, keys)
    assert store.hand_back(keys, taken.token)
    sent_seconds_ago(client, keys, 600)  # its first message is long gone

    assert store.find_lost_messages() == 0
    assert client.hget(keys.record, "absent") is None


def test_a_recent_message_is_not_looked_for(store: JobStore, client: Any, keys: JobKeys) -> None:
    create(store, keys)  # sent just now, not in any list yet

    assert store.find_lost_messages() == 0
    assert client.hget(keys.record, "absent") is None


def test_resending_notes_the_new_message_and_counts_it_by_reason(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys)
    sent_seconds_ago(client, keys, 30)
    look_twice(store, client, keys)

    store.mark_resent(keys, 2)

    assert store.requeued() == []
    assert client.hget(keys.record, "msgs") == "2"
    assert store.find_lost_messages() == 0  # sent again just now
    assert store.metrics_snapshot()["stats"]["resent:lost"] == 1
    taken = started(store, keys)
    store.hand_back(keys, taken.token)
    store.mark_resent(keys, 3)
    assert store.metrics_snapshot()["stats"]["resent:requeued"] == 1


def test_a_job_whose_message_keeps_getting_lost_ends_failed_worker_lost(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys)
    for seq in range(2, MAX_LOST_RESENDS + 2):
        sent_seconds_ago(client, keys, 30)
        assert look_twice(store, client, keys) == 1
        assert store.read(keys, poll=False).status is Status.INITIALIZED
        store.mark_resent(keys, seq)
    sent_seconds_ago(client, keys, 30)

    assert look_twice(store, client, keys) == 1

    record = store.read(keys, poll=False)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert (record.error["code"], record.error["retryable"]) == ("WORKER_LOST", True)
    assert store.requeued() == []


def test_a_requeued_job_is_claimed_by_one_sweep_only(store: JobStore, keys: JobKeys) -> None:
    create(store, keys)
    taken = started(store, keys)
    store.hand_back(keys, taken.token)

    assert store.claim_requeued() == [
        (keys, "demo.count", 2, store.settings.queue, DEFAULT_PRIORITY)
    ]
    assert store.claim_requeued() == []  # a second sweep at the same time
    store.unclaim(keys)  # the send failed
    assert store.claim_requeued() == [
        (keys, "demo.count", 2, store.settings.queue, DEFAULT_PRIORITY)
    ]


def test_resending_a_gone_job_writes_nothing(store: JobStore, client: Any, keys: JobKeys) -> None:
    store.mark_resent(keys, 2)

    assert not client.exists(keys.record)


# -- hand-backs ----------------------------------------------------------------------


def hand_back_times(store: JobStore, keys: JobKeys, times: int) -> None:
    for n in range(times):
        taken = started(store, keys)
        assert store.hand_back(keys, taken.token)
        store.mark_resent(keys, n + 2)


def test_hand_backs_spend_no_attempt(store: JobStore, client: Any, keys: JobKeys) -> None:
    create(store, keys, max_attempts=1)
    hand_back_times(store, keys, 3)  # three rolling deploys
    started(store, keys)
    assert store.finish_done(keys, "[]")

    record = store.read(keys, poll=False)
    assert (record.status, record.attempt) == (Status.DONE, 4)
    assert [r.outcome for r in record.runs] == ["handed_back"] * 3 + ["DONE"]


def test_a_worker_lost_after_hand_backs_is_retried_within_max_attempts(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys, max_attempts=2)
    hand_back_times(store, keys, 3)
    started(store, keys)
    lose_lease(client, keys)

    assert store.read(keys, poll=False).status is Status.INITIALIZED  # 1 attempt of 2 spent


def test_hand_backs_past_their_bound_count_as_attempts(
    client: Any, settings: Settings, keys: JobKeys
) -> None:
    store = JobStore(client, settings.with_overrides(max_hand_backs=1))
    create(store, keys, max_attempts=2)
    hand_back_times(store, keys, 2)  # the second one counts
    started(store, keys)
    lose_lease(client, keys)

    record = store.read(keys, poll=False)
    assert record.status is Status.FAILED
    assert record.error is not None and record.error["code"] == "WORKER_LOST"


# -- a queued job without a heartbeat --------------------------------------------------


def test_a_queued_job_without_heartbeat_has_its_ttl_renewed_by_the_sweep(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    create(store, keys, poll_timeout=0)
    live_ms = (MAX_RUNTIME + RETENTION) * 1000
    now_ms = int(client.time()[0]) * 1000
    due = client.zscore(keyspace.DUE, keys.task_arg())
    assert due is not None and now_ms < due <= now_ms + live_ms
    # Much later, still waiting: its keys are about to expire.
    for key in (keys.record, keys.partial):
        client.pexpire(key, 2000)
    client.zadd(keyspace.DUE, {keys.task_arg(): now_ms})

    assert store.sweep_due() == 1

    assert_ttl_close(client, keys.record, live_ms)
    assert_ttl_close(client, keys.tombstone, live_ms + store.settings.tombstone_ttl * 1000)
    assert client.zscore(keyspace.DUE, keys.task_arg()) > now_ms + live_ms / 4
    assert store.read(keys, poll=False).status is Status.INITIALIZED


# -- queues and priorities ----------------------------------------------------------


def test_the_sweep_looks_for_lost_messages_in_every_queue_at_every_priority(
    store: JobStore, client: Any
) -> None:
    """A job of the type queue 'reports' (tests.support.jobs), priority 1: its
    message is found in that queue's list for its priority; another job's,
    nowhere, is lost and sent again on its own queue at its own priority."""
    reports = job_queue(store.settings, "reports")
    found, lost = JobKeys("t1", "on-reports"), JobKeys("t1", "lost-on-reports")
    for job in (found, lost):
        created = store.create(
            job, "test.report", "{}", poll_timeout=0, retention=RETENTION,
            max_runtime=MAX_RUNTIME, queue=reports, priority=1,
        )  # fmt: skip
        assert created.outcome is CreateOutcome.CREATED
        sent_seconds_ago(client, job, 30)
    # kombu's Redis transport: priority 1 goes out at 9 - 1, the list of step 8.
    client.lpush(queue_lists(reports)[9 - 1], kombu_message(found.message_id(1)))

    assert store.find_lost_messages() == 0  # the first look only suspects
    assert client.hget(found.record, "absent") is None
    client.hset(lost.record, "absent", int(client.hget(lost.record, "absent")) - LOST_CONFIRM_MS)
    assert store.find_lost_messages() == 1
    assert store.requeued() == [(lost, "test.report", 2, reports, 1)]


def test_queue_position_counts_every_more_urgent_job_first(store: JobStore) -> None:
    def submit(job_id: str, priority: int) -> JobKeys:
        job = JobKeys("t1", job_id)
        store.create(
            job, "demo.count", "{}", poll_timeout=0, retention=RETENTION,
            max_runtime=MAX_RUNTIME, priority=priority,
        )  # fmt: skip
        return job

    low_1, low_2 = submit("low-1", 0), submit("low-2", 0)
    high = submit("high", 9)
    middle = submit("middle", 5)

    def position(job: JobKeys) -> int | None:
        return store.read(job, poll=False).queue_position

    assert [position(j) for j in (high, middle, low_1, low_2)] == [0, 1, 2, 3]
    store.start(high, "w1")  # it leaves its index: the others move up
    assert [position(j) for j in (middle, low_1, low_2)] == [0, 1, 2]
    assert store.metrics_snapshot()["queued"][store.settings.queue] == 3
