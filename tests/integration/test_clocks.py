"""The two clocks: the poll heartbeat and the retention window (real Redis TTLs)."""

from __future__ import annotations

import time

import pytest
from flask.testing import FlaskClient

from tests.support.api import submit, terminal
from tests.support.harness import Process, wait_until
from workers.config import Settings
from workers.keys import JobKeys
from workers.states import Status
from workers.store import JobRecord, JobStore

pytestmark = pytest.mark.integration

# Each of these would hold its worker process for a minute if nothing stopped it.
LONG_DEMO = {"n": 600, "delay": 0.1}


def observe(store: JobStore, job_id: str) -> JobRecord:
    """Look at a job without polling it (a poll would renew its heartbeat)."""
    return store.read(JobKeys("default", job_id), poll=False)


def wait_terminal(store: JobStore, job_id: str, timeout: float) -> JobRecord:
    return wait_until(
        lambda: (r := observe(store, job_id)).status.terminal and r, timeout, f"{job_id} to end"
    )


def occupy_both_slots(api: FlaskClient, store: JobStore, bodies: list[dict]) -> list[str]:
    ids = [submit(api, **body).get_json()["id"] for body in bodies]
    wait_until(
        lambda: all(observe(store, i).status is Status.RUNNING for i in ids),
        20,
        "both jobs to run",
    )
    return ids


def assert_slots_free(api: FlaskClient) -> None:
    """A quick job runs to DONE: no worker process is still held."""
    response = submit(api, params={"n": 2}, wait=15)
    assert response.get_json()["status"] == "DONE"


def test_unpolled_jobs_time_out_and_free_their_workers(api: FlaskClient, store: JobStore) -> None:
    # One job reports progress; the other never does, so only the watchdog sees it.
    ids = occupy_both_slots(
        api,
        store,
        [
            {"params": LONG_DEMO, "poll_timeout": 2},
            {"params": {**LONG_DEMO, "ignore_cancel": True}, "poll_timeout": 2},
        ],
    )

    for job_id in ids:
        record = wait_terminal(store, job_id, 10)
        assert record.status is Status.FAILED
        assert record.error is not None
        assert record.error["code"] == "TIMED_OUT"
        assert record.error["retryable"] is True
        assert record.expires_ms is not None
        assert record.finished_ms == record.expires_ms - record.retention * 1000
    assert_slots_free(api)


def test_timed_out_queued_job_never_starts(api: FlaskClient, store: JobStore) -> None:
    blockers = occupy_both_slots(
        api, store, [{"params": {"n": 30, "delay": 0.1}, "poll_timeout": 0}] * 2
    )
    queued = submit(api, params={"n": 1}, poll_timeout=1).get_json()["id"]

    record = wait_terminal(store, queued, 10)
    for blocker in blockers:
        wait_terminal(store, blocker, 30)

    assert record.error is not None
    assert record.error["code"] == "TIMED_OUT"
    assert observe(store, queued).started_ms is None, "a timed-out queued job never starts"


def test_polled_twin_of_a_timed_out_job_completes(api: FlaskClient) -> None:
    location = submit(api, params={"n": 30, "delay": 0.1}, poll_timeout=2).headers["Location"]

    seen: list[dict] = []
    deadline = time.monotonic() + 30
    while not seen or not terminal(seen[-1]):
        assert time.monotonic() < deadline
        seen.append(api.get(location).get_json())
        time.sleep(0.5)  # a client polling every half second, well inside its 2 s heartbeat

    assert seen[-1]["status"] == "DONE"


def test_job_ignoring_its_stop_is_killed_after_the_grace(
    api: FlaskClient, store: JobStore, worker: Process
) -> None:
    ids = occupy_both_slots(
        api,
        store,
        [{"job_type": "test.stubborn", "params": {"seconds": 120}, "poll_timeout": 1}] * 2,
    )
    for job_id in ids:
        error = wait_terminal(store, job_id, 10).error
        assert error is not None
        assert error["code"] == "TIMED_OUT"

    # The grace passes, the pool processes are killed and replaced.
    assert_slots_free(api)
    for job_id in ids:
        assert f"job {job_id} did not stop within" in worker.output()
    for job_id in ids:
        record = observe(store, job_id)
        assert record.status is Status.FAILED, "the redelivered message does not run it again"
        assert record.attempt == 1


def test_finished_job_expires_to_410_then_404(api: FlaskClient, settings: Settings) -> None:
    response = submit(api, params={"n": 1}, retention=1, wait=10)
    assert response.status_code == 201
    location = response.headers["Location"]

    gone = wait_until(lambda: (r := api.get(location)).status_code == 410 and r, 5, "410")
    assert gone.mimetype == "application/problem+json"
    assert gone.get_json()["code"] == "JOB_EXPIRED"
    assert api.get(f"{location}/result").status_code == 410

    wait_until(
        lambda: api.get(location).status_code == 404,
        settings.tombstone_ttl + 3,
        "the tombstone to expire",
    )
    assert api.get(location).get_json()["code"] == "JOB_NOT_FOUND"


def test_timed_out_job_expires_after_its_retention(api: FlaskClient, store: JobStore) -> None:
    job_id = submit(api, params={"n": 1, "delay": 5}, poll_timeout=1, retention=1).get_json()["id"]

    wait_until(
        lambda: api.get(f"/v1/jobs/{job_id}").status_code == 410,
        10,
        "the timed-out job to expire",
    )
