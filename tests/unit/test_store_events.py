"""The events stream: every transition wakes long polls, and the stream stays small."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.helpers import MakeJob
from workers.errors import JobExpired
from workers.keys import JobKeys
from workers.limits import EVENTS_KEPT, EVENTS_TTL_MS
from workers.states import ErrorCode
from workers.store import JobStore


def stream_id(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


def last_event(client: Any, job: JobKeys) -> tuple[str, dict[str, str]] | None:
    entries = client.xrevrange(job.events, count=1)
    return (entries[0][0], entries[0][1]) if entries else None


def watched(store: JobStore, job: JobKeys) -> str:
    """What a long poll does before it blocks: the stream exists from now on."""
    return store.read(job, poll=False, watch=True).last_event_id


def test_create_writes_no_event(client: Any, make_job: MakeJob) -> None:
    job = make_job("INITIALIZED")

    assert not client.exists(job.events)


@pytest.mark.parametrize("status", ["INITIALIZED", "RUNNING"])
def test_nobody_waiting_means_no_stream_at_all(
    store: JobStore, client: Any, make_job: MakeJob, status: str
) -> None:
    job = make_job(status)
    store.report(job, 50, "Running: half")
    store.finish_done(job, "[]")

    assert not client.exists(job.events)


def test_a_watching_read_creates_the_stream_with_the_current_state(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    store.report(job, 40)

    after_id = watched(store, job)

    assert last_event(client, job) == (
        after_id,
        {"s": "RUNNING", "p": "40", "m": "Running", "v": client.hget(job.record, "ev")},
    )
    assert watched(store, job) == after_id  # a second waiter reuses it


def test_a_watching_submit_creates_the_stream(store: JobStore, client: Any) -> None:
    job = JobKeys("t1", "watched-submit")
    store.create(job, "demo.count", "{}", poll_timeout=10, retention=60, max_runtime=60, watch=True)

    assert last_event(client, job) is not None
    assert 0 < client.pttl(job.events) <= EVENTS_TTL_MS


def test_watching_a_finished_job_creates_nothing(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("DONE")

    assert watched(store, job) == "0-0"
    assert not client.exists(job.events)


TRANSITIONS: dict[str, tuple[str, Callable[[JobStore, JobKeys], Any], dict[str, str]]] = {
    "start": ("INITIALIZED", lambda s, j: s.start(j), {"s": "RUNNING", "p": "0"}),
    "report": ("RUNNING", lambda s, j: s.report(j, 25), {"s": "RUNNING", "p": "25"}),
    "message": ("RUNNING", lambda s, j: s.report(j, None, "Running: x"), {"s": "RUNNING"}),
    "finish_done": ("RUNNING", lambda s, j: s.finish_done(j, "[]"), {"s": "DONE", "p": "100"}),
    "finish_failed": (
        "RUNNING",
        lambda s, j: s.finish_failed(j, {"code": "JOB_ERROR", "message": "x", "retryable": False}),
        {"s": "FAILED"},
    ),
    "fail": (
        "INITIALIZED",
        lambda s, j: s.fail(j, ErrorCode.CANCELLED_BY_USER, "Cancelled"),
        {"s": "FAILED"},
    ),
    "timeout": (
        "RUNNING",
        lambda s, j: (s.redis.delete(j.heartbeat), s.read(j, poll=False)),
        {"s": "FAILED"},
    ),
}


@pytest.mark.parametrize("name", list(TRANSITIONS))
def test_transition_appends_an_event(
    store: JobStore, client: Any, make_job: MakeJob, name: str
) -> None:
    status, transition, expected_fields = TRANSITIONS[name]
    job = make_job(status)
    watched(store, job)
    before = last_event(client, job)

    transition(store, job)

    after = last_event(client, job)
    assert after is not None
    if before is not None:
        assert stream_id(after[0]) > stream_id(before[0])
    assert expected_fields.items() <= after[1].items()


@pytest.mark.parametrize("name", list(TRANSITIONS))
def test_events_stream_numbers_each_change_and_has_a_ttl(
    store: JobStore, client: Any, make_job: MakeJob, name: str
) -> None:
    status, transition, _ = TRANSITIONS[name]
    job = make_job(status)
    watched(store, job)
    store.report(job, 5)  # a first event where the job is running

    transition(store, job)

    changes = [int(fields["v"]) for _id, fields in client.xrange(job.events)]
    assert changes == list(range(changes[0], changes[0] + len(changes)))
    assert changes[-1] == int(client.hget(job.record, "ev"))
    assert 0 < client.pttl(job.events) <= EVENTS_TTL_MS


def test_events_stream_keeps_the_last_changes_only(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    watched(store, job)

    for percent in range(1, EVENTS_KEPT + 11):
        store.report(job, percent)

    kept = client.xrange(job.events)
    assert len(kept) == EVENTS_KEPT
    assert kept[-1][1]["p"] == str(EVENTS_KEPT + 10)


def test_every_change_counts_whether_watched_or_not(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    before = int(client.hget(job.record, "ev") or 0)

    store.report(job, 10)
    store.report(job, 5)  # lower: no change
    store.report(job, None, "Running: x")
    store.finish_done(job, "[]")

    assert int(client.hget(job.record, "ev")) == before + 3
    assert not client.exists(job.events)


@pytest.mark.parametrize("name", list(TRANSITIONS))
def test_events_stream_does_not_outlive_the_record(
    store: JobStore, client: Any, make_job: MakeJob, name: str
) -> None:
    status, transition, _ = TRANSITIONS[name]
    job = make_job(status)
    watched(store, job)

    transition(store, job)

    # Read the stream first: the record's TTL can only have run down since.
    events_ttl = client.pttl(job.events)
    assert 0 < events_ttl <= client.pttl(job.record) + 50


def test_events_stream_of_a_job_gone_at_once_dies_at_once(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    client.delete(job.heartbeat)
    client.hset(job.record, "deadline", 1000)  # timed out longer than retention ago

    with pytest.raises(JobExpired):
        store.read(job, poll=False)

    assert client.pttl(job.events) <= 1


def test_report_that_changes_nothing_writes_no_event(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    watched(store, job)
    store.report(job, 50)
    before = last_event(client, job)

    store.report(job, 30)  # lower: ignored
    store.report(job, None)  # the watchdog's check

    assert last_event(client, job) == before


def test_wait_for_event_returns_the_next_event(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("INITIALIZED")
    after_id = store.read(job, poll=True, watch=True).last_event_id

    store.start(job)
    event = store.wait_for_event(job, after_id, timeout=10)

    assert event is not None
    assert event[1] == "RUNNING"
    assert event[0] == watched(store, job)


def test_wait_for_event_times_out_without_a_change(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")
    after_id = store.read(job, poll=True, watch=True).last_event_id

    assert store.wait_for_event(job, after_id, timeout=0.1) is None


def test_events_stream_goes_two_seconds_after_the_end(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    # A one-entry stream costs ~4.7 KB: it must not linger after the job ends.
    job = make_job("RUNNING")
    watched(store, job)
    assert client.pttl(job.events) > 2000

    store.finish_done(job, "[]")

    assert last_event(client, job) is not None
    assert 0 < client.pttl(job.events) <= 2000


def test_wait_for_event_answers_the_latest_of_several_changes(
    store: JobStore, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    after_id = store.read(job, poll=True, watch=True).last_event_id
    store.report(job, 10)
    store.report(job, 20)
    store.finish_done(job, "[]")

    event = store.wait_for_event(job, after_id, timeout=10)

    assert event is not None
    assert event[1] == "DONE"
