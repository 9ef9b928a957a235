"""Chunked partial rows and results in the store's Lua (fakeredis + lupa)."""

from __future__ import annotations

from typing import Any

from tests.unit.helpers import MakeJob, record_hash
from workers.store import JobStore
from workers.store.chunks import ROWS, manifest
from workers.store.scripts import Chunks


def job_keys(client: Any, job: Any) -> list[str]:
    return sorted(k for k in client.scan_iter(match=f"*{job.tag}*"))


def publish_in_chunks(store: JobStore, job: Any, token: str = "") -> None:
    store.report(job, 10, rows='{"columns":["a"]}\n[[1]]\n', token=token)
    store.report(job, 20, rows="[[2]]\n", token=token, chunk=1)
    store.report(job, 30, rows="[[3]]\n", token=token, chunk=2)


def test_rows_go_to_the_chunk_the_worker_names(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    publish_in_chunks(store, job)

    assert record_hash(client, job)["pchunks"] == "3"
    assert "".join(store.partial_chunks(job, 3)) == '{"columns":["a"]}\n[[1]]\n[[2]]\n[[3]]\n'
    assert all(client.pttl(k) > 0 for k in job_keys(client, job))


def test_partial_chunks_become_the_result(store: JobStore, client: Any, make_job: MakeJob) -> None:
    job = make_job("RUNNING")
    publish_in_chunks(store, job)

    assert store.finish_done(job, manifest(ROWS), chunks=Chunks.PARTIAL, truncated=True)

    record = store.read(job, poll=False, inline_max=None)
    assert record.result_chunks == 3 and record.partial_chunks == 0 and record.truncated
    assert record.result_json == manifest(ROWS)
    assert "".join(store.result_chunks(job, 3)) == '{"columns":["a"]}\n[[1]]\n[[2]]\n[[3]]\n'
    assert not any(":partial" in k for k in job_keys(client, job))
    ttl = client.pttl(job.record)
    assert all(abs(client.pttl(k) - ttl) < 1000 for k in job_keys(client, job) if ":result" in k)
    # Never inline: its result key is the manifest.
    assert store.read(job, poll=False, inline_max=10**9).result_json is None


def test_cancel_and_delete_leave_no_chunk(store: JobStore, client: Any, make_job: MakeJob) -> None:
    running = make_job("RUNNING")
    publish_in_chunks(store, running)
    store.cancel(running)
    assert not any(":partial" in k for k in job_keys(client, running))

    done = make_job("RUNNING")
    publish_in_chunks(store, done)
    store.finish_done(done, manifest(ROWS), chunks=Chunks.PARTIAL)
    store.cancel(done)  # terminal: deleted
    assert [k for k in job_keys(client, done)] == [done.tombstone]


def test_written_chunks_are_the_result_and_a_failure_deletes_them(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    assert store.write_chunk(job, 0, "[[1]]\n")
    assert store.write_chunk(job, 1, "[[2]]\n")
    assert store.finish_done(job, manifest(ROWS), chunks=Chunks.WRITTEN)
    record = store.read(job, poll=False, inline_max=None)
    assert record.result_chunks == 2
    assert record.result_bytes == len(manifest(ROWS)) + 12

    failed = make_job("RUNNING")
    store.write_chunk(failed, 0, "[[1]]\n")
    store.finish_failed(failed, {"code": "JOB_ERROR", "message": "x", "retryable": False})
    assert not any(":result" in k for k in job_keys(client, failed))


def test_a_chunk_is_not_written_for_a_job_that_stopped(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    store.cancel(job)
    assert store.write_chunk(job, 0, "[[1]]\n") is False
    assert not any(":result" in k for k in job_keys(client, job))


def test_a_new_attempt_starts_without_the_last_ones_rows(
    store: JobStore, client: Any, make_job: MakeJob
) -> None:
    job = make_job("RUNNING")
    started = store.start(job)  # (already running: skipped)
    assert not started.run
    publish_in_chunks(store, job)
    token = record_hash(client, job)["lease"]
    assert store.hand_back(job, token)
    assert store.start(job).run

    assert not any(":partial" in k for k in job_keys(client, job))
    assert "pchunks" not in record_hash(client, job)
