"""Job histograms in Redis and how a job's end reads back, on real Lua.

One bucket is incremented per observation; the cumulative buckets are made
at scrape time. A job's duration is counted once, whoever looks at its end.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from celery.exceptions import Ignore

from tests.unit.helpers import MAX_RUNTIME, RETENTION, MakeJob
from workers import keys as keyspace
from workers.job_metrics import JOB_BUCKETS, JobEnd, JobMetrics, bucket_of, histograms
from workers.keys import JobKeys
from workers.states import ErrorCode, Status
from workers.store import JobStore
from workers.sweep import sweep
from workers.task_states import FAILURES, JobFailed, ProgressEvents, task_result


def ran_for(client: Any, keys: JobKeys, seconds: float) -> None:
    """The record's start moved back: the job ran ``seconds`` when it ends now."""
    started = int(client.hget(keys.record, "started"))
    client.hset(keys.record, "started", started - int(seconds * 1000))


def test_a_value_falls_in_the_first_bucket_whose_bound_it_does_not_exceed() -> None:
    assert bucket_of(2.0, JOB_BUCKETS) == "2.5"
    assert bucket_of(2.5, JOB_BUCKETS) == "2.5"
    assert bucket_of(99999.0, JOB_BUCKETS) == "+Inf"


def test_buckets_are_stored_apart_and_read_back_cumulative() -> None:
    raw = {"demo|1.0": "1", "demo|2.5": "2", "demo|+Inf": "1", "demo|sum": "9.5"}

    (series,) = histograms(raw, (1.0, 2.5), 1)

    assert series.labels == ("demo",)
    assert series.buckets == [("1.0", 1), ("2.5", 3), ("+Inf", 4)]
    assert series.total == 9.5


def test_a_job_someone_else_ended_is_counted_once_by_the_first_look(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    keys = make_job("RUNNING")
    ran_for(client, keys, 2.0)
    assert store.fail(keys, ErrorCode.CANCELLED_BY_USER, "Cancelled by the user")
    metrics = JobMetrics(client)

    first, second = metrics.ended(keys), metrics.ended(keys)

    assert first.status is Status.FAILED and first.first_seen and not second.first_seen
    assert first.seconds is not None and 2.0 <= first.seconds < 2.5
    counts = client.hgetall(keyspace.JOB_DURATION)
    assert counts["demo.count|FAILED|2.5"] == "1"
    assert "demo.count|FAILED|1.0" not in counts


def test_a_failed_job_ends_with_its_code_and_message(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    keys = make_job("FAILED")

    end = JobMetrics(client).ended(keys)

    assert (end.status, end.code, end.message) == (
        Status.FAILED,
        ErrorCode.CANCELLED_BY_USER,
        "Cancelled by the user",
    )


def test_a_first_start_adds_the_jobs_wait_by_type_and_a_second_does_not(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    store.create(
        keys, "demo.count", '{"n":3}', poll_timeout=0, retention=RETENTION,
        max_runtime=MAX_RUNTIME,
    )  # fmt: skip
    client.hset(keys.record, "created", int(client.hget(keys.record, "created")) - 700)

    assert store.start(keys, "w1").run
    client.delete(keys.lease)  # its worker died: the sweep requeues the job
    client.zadd(keyspace.DUE, {keys.task_arg(): 0})
    store.sweep_due()
    assert store.start(keys, "w2").attempt == 2

    (series,) = histograms(client.hgetall(keyspace.JOB_QUEUE_WAIT), JOB_BUCKETS, 1)
    assert series.labels == ("demo.count",)
    assert series.buckets[-1] == ("+Inf", 1)
    assert dict(series.buckets)["0.5"] == 0 and dict(series.buckets)["1.0"] == 1
    assert 0.7 <= series.total < 1.0


def test_the_workers_finish_counts_the_duration_once_and_says_so(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    keys = make_job("RUNNING")
    ran_for(client, keys, 0.3)

    applied = store.end_done(keys, "{}")
    again = JobMetrics(client).ended(keys)

    assert applied.applied and applied.counted
    assert applied.seconds is not None and 0.3 <= applied.seconds < 0.5
    assert again.status is Status.DONE and not again.first_seen
    assert client.hgetall(keyspace.JOB_DURATION)["demo.count|DONE|0.5"] == "1"


def test_a_failed_finish_counts_the_duration_under_failed(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    keys = make_job("RUNNING")

    applied = store.end_failed(keys, {"code": "JOB_ERROR", "message": "boom", "retryable": False})

    assert (applied.status, applied.applied, applied.counted) == ("FAILED", True, True)
    counted = histograms(client.hgetall(keyspace.JOB_DURATION), JOB_BUCKETS, 2)
    assert [(s.labels, s.buckets[-1][1]) for s in counted] == [(("demo.count", "FAILED"), 1)]


def test_a_refused_finish_counts_nothing(store: JobStore, client: Any, make_job: MakeJob) -> None:
    keys = make_job("FAILED")

    applied = store.end_done(keys, "{}")

    assert not applied.applied and not applied.counted and applied.seconds is None
    assert client.hgetall(keyspace.JOB_DURATION) == {}


def test_the_sweep_reports_a_job_it_failed_for_a_lost_worker(
    store: JobStore, client: Any, keys: JobKeys
) -> None:
    store.create(
        keys, "demo.count", '{"n":3}', poll_timeout=0, retention=RETENTION,
        max_runtime=MAX_RUNTIME, max_attempts=1,
    )  # fmt: skip
    assert store.start(keys, "w1").run
    client.delete(keys.lease)  # its worker died: the lease lapses
    client.zadd(keyspace.DUE, {keys.task_arg(): 0})
    reported: list[tuple[JobKeys, JobEnd]] = []

    sweep(store, lambda *_: None, reported.extend)
    sweep(store, lambda *_: None, reported.extend)

    assert [(k, end.code) for k, end in reported] == [(keys, ErrorCode.WORKER_LOST)]
    counted = histograms(client.hgetall(keyspace.JOB_DURATION), JOB_BUCKETS, 2)
    assert [(s.labels, s.buckets[-1][1]) for s in counted] == [(("demo.count", "FAILED"), 1)]


# -- what Celery is told ------------------------------------------------------------


@pytest.mark.parametrize("code", list(ErrorCode))
def test_a_failed_job_raises_an_exception_named_after_its_code(code: ErrorCode) -> None:
    with pytest.raises(JobFailed) as raised:
        task_result(JobEnd(Status.FAILED, code, "why"))

    assert type(raised.value).__name__ == code.value
    assert repr(raised.value) == f"{code.value}('why')"
    # The pool process pickles it to the worker's main process.
    assert type(pickle.loads(pickle.dumps(raised.value))) is FAILURES[code]


def test_a_done_job_returns_a_summary() -> None:
    assert task_result(JobEnd(Status.DONE, seconds=2.0)) == "DONE in 2.000 s"


@pytest.mark.parametrize("status", [None, Status.INITIALIZED, Status.RUNNING])
def test_an_execution_that_left_the_job_unfinished_is_ignored(status: Status | None) -> None:
    with pytest.raises(Ignore):
        task_result(JobEnd(status))


def test_progress_events_are_sent_on_change_at_most_once_a_second_after_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr("workers.task_states.time.monotonic", lambda: clock[0])
    sent: list[dict[str, Any]] = []
    events = ProgressEvents(lambda event, **fields: sent.append({"event": event, **fields}))

    events(5, "Running: step 0")  # the job just started: a short one needs no event
    clock[0] += 1.0
    events(10, "Running: step 1")
    events(20, "")  # too soon
    clock[0] += 1.0
    events(20, "")
    clock[0] += 1.0
    events(20, "")  # no change

    assert [(e["event"], e["result"], e["progress"]) for e in sent] == [
        ("task-progress", "10% Running: step 1", 10),
        ("task-progress", "20% Running: step 1", 20),
    ]
