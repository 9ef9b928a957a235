"""JobStore.report (report_progress.lua): progress, message, partial rows."""

from __future__ import annotations

from typing import Any

from tests.unit.helpers import POLL_TIMEOUT, RETENTION, MakeJob, assert_ttl_close, record_hash
from workers.keys import JobKeys
from workers.store import JobStore


def test_report_stores_progress(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")

    assert store.report(job, 50) == "RUNNING"

    assert store.read(job, poll=False).progress == 50


def test_progress_never_decreases(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")

    store.report(job, 50)
    store.report(job, 30)

    assert store.read(job, poll=False).progress == 50


def test_progress_is_capped_at_99_while_running(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")

    store.report(job, 100)

    assert store.read(job, poll=False).progress == 99


def test_report_without_percent_keeps_progress(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")
    store.report(job, 40)

    assert store.report(job, None) == "RUNNING"

    assert store.read(job, poll=False).progress == 40


def test_report_stores_message(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")

    store.report(job, 10, "Running: step 1 of 10")

    assert store.read(job, poll=False).message == "Running: step 1 of 10"


def test_report_without_message_keeps_message(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("RUNNING")
    store.report(job, 10, "Running: step 1 of 10")

    store.report(job, 20)

    assert store.read(job, poll=False).message == "Running: step 1 of 10"


def test_report_appends_rows_to_partial(store: JobStore, client: Any, make_job: MakeJob) -> None:
    job = make_job("RUNNING")

    store.report(job, 10, rows='{"step":0}\n')
    store.report(job, 20, rows='{"step":1}\n{"step":2}\n')

    assert client.get(job.partial) == '{"step":0}\n{"step":1}\n{"step":2}\n'


def test_partial_rows_have_a_ttl(store: JobStore, client: Any, make_job: MakeJob) -> None:
    job = make_job("RUNNING")

    store.report(job, 10, rows='{"step":0}\n')

    # The partial rows die with the record.
    assert_ttl_close(client, job.partial, (POLL_TIMEOUT + RETENTION) * 1000)


def test_report_on_failed_job_returns_failed(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("FAILED")
    before = record_hash(client, job)

    assert store.report(job, 70, "Running: late", '{"step":9}\n') == "FAILED"

    assert record_hash(client, job) == before
    assert not client.exists(job.partial)


def test_report_on_done_job_returns_done(store: JobStore, make_job: MakeJob) -> None:
    job = make_job("DONE")

    assert store.report(job, 10) == "DONE"
    assert store.read(job, poll=False).progress == 100


def test_report_on_queued_job_writes_nothing(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("INITIALIZED")

    assert store.report(job, 30, "Running: early") == "INITIALIZED"

    assert record_hash(client, job)["progress"] == "0"


def test_report_on_missing_job_returns_missing(store: JobStore, client: Any, keys: JobKeys) -> None:
    assert store.report(keys, 10, "Running: x", '{"step":0}\n') == "missing"
    assert client.keys("*") == []
