"""Cancel, queue position, idempotent ids, listing and multi-results over HTTP,
with a real redis-server and a real worker."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from tests.support.api import poll_until, submit, terminal
from tests.support.harness import Process, start_worker, wait_until
from workers.broker import queue_lists
from workers.config import Settings
from workers.keys import JobKeys
from workers.states import Status
from workers.store import JobRecord, JobStore

pytestmark = pytest.mark.integration

# 8 s each: longer than billiard takes to notice a pool process that a forced
# stop killed (seen: up to 5 s), so both can be RUNNING at once even then.
BLOCKER: dict[str, Any] = {"params": {"n": 80, "delay": 0.1}, "poll_timeout": 0}


def waiting(broker_client: redis.Redis, queue: str) -> int:
    """Messages waiting in the broker's lists of ``queue`` (every priority)."""
    return sum(int(broker_client.llen(name)) for name in queue_lists(queue))


def observe(store: JobStore, job_id: str, tenant: str = "default") -> JobRecord:
    return store.read(JobKeys(tenant, job_id), poll=False)


def occupy_workers(api: FlaskClient, store: JobStore) -> list[str]:
    """Both worker processes busy for about 8 s."""
    ids = [submit(api, **BLOCKER).get_json()["id"] for _ in range(2)]
    wait_until(lambda: all(observe(store, i).status is Status.RUNNING for i in ids), 30, "blockers")
    return ids


def wait_done(store: JobStore, ids: list[str]) -> None:
    wait_until(lambda: all(observe(store, i).status.terminal for i in ids), 30, "jobs to end")


# -- cancel -------------------------------------------------------------------


def test_cancelled_queued_job_never_starts(api: FlaskClient, store: JobStore) -> None:
    blockers = occupy_workers(api, store)
    queued = submit(api, params={"n": 1}).get_json()["id"]

    response = api.delete(f"/v1/jobs/{queued}")

    assert response.status_code == 200
    doc = response.get_json()
    assert doc["status"] == "FAILED"
    assert doc["error"]["code"] == "CANCELLED_BY_USER"
    assert doc["error"]["retryable"] is False
    assert "queue_position" not in doc
    wait_done(store, blockers)
    assert observe(store, queued).started_ms is None
    assert api.get(f"/v1/jobs/{queued}").get_json()["error"]["code"] == "CANCELLED_BY_USER"


def test_cancelled_running_job_stops_and_frees_its_worker(
    api: FlaskClient, store: JobStore
) -> None:
    ids = [
        submit(api, params={"n": 600, "delay": 0.1}).get_json()["id"],
        submit(api, params={"n": 600, "delay": 0.1, "ignore_cancel": True}).get_json()["id"],
    ]
    wait_until(lambda: all(observe(store, i).status is Status.RUNNING for i in ids), 20, "run")

    for job_id in ids:
        assert api.delete(f"/v1/jobs/{job_id}").status_code == 200

    assert submit(api, params={"n": 2}, wait=15).get_json()["status"] == "DONE"
    for job_id in ids:
        result = api.get(f"/v1/jobs/{job_id}/result")
        assert result.status_code == 400
        assert result.get_json()["error"]["code"] == "CANCELLED_BY_USER"


def test_job_ignoring_cancel_is_stopped_by_force(
    api: FlaskClient, store: JobStore, worker: Process
) -> None:
    ids = [
        submit(api, "test.stubborn", params={"seconds": 120}, poll_timeout=0).get_json()["id"]
        for _ in range(2)
    ]
    wait_until(lambda: all(observe(store, i).status is Status.RUNNING for i in ids), 20, "run")

    for job_id in ids:
        api.delete(f"/v1/jobs/{job_id}")

    assert submit(api, params={"n": 2}, wait=20).get_json()["status"] == "DONE"
    kill_lines = [f"job {job_id} did not stop within" for job_id in ids]
    wait_until(lambda: all(line in worker.output() for line in kill_lines), 10, "both forced stops")
    for job_id in ids:
        error = observe(store, job_id).error
        assert error is not None
        assert error["code"] == "CANCELLED_BY_USER"


def test_what_a_cancelled_job_returns_is_dropped(
    api: FlaskClient, store: JobStore, redis_client: redis.Redis, broker_client: redis.Redis
) -> None:
    # Swallows the stop and returns within the grace: its result must not land.
    job_id = submit(api, "test.stubborn", params={"seconds": 1}, poll_timeout=0).get_json()["id"]
    wait_until(lambda: observe(store, job_id).status is Status.RUNNING, 20, "run")

    api.delete(f"/v1/jobs/{job_id}")
    wait_until(lambda: "survived" not in str(observe(store, job_id)), 1, "nothing")

    poll_until(api, f"/v1/jobs/{job_id}", terminal)
    wait_until(lambda: waiting(broker_client, "jobgate-test") == 0, 10, "the queue to drain")
    record = observe(store, job_id)
    assert record.status is Status.FAILED
    assert not redis_client.exists(JobKeys("default", job_id).result)


def test_deleting_a_finished_job_leaves_410(api: FlaskClient) -> None:
    job_id = submit(api, params={"n": 1}, wait=10).get_json()["id"]

    response = api.delete(f"/v1/jobs/{job_id}")

    assert response.status_code == 204
    assert response.data == b""
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/result"):
        gone = api.get(path)
        assert gone.status_code == 410
        assert gone.get_json()["code"] == "JOB_EXPIRED"
    assert api.delete(f"/v1/jobs/{job_id}").status_code == 410


def test_deleting_an_unknown_job_is_404(api: FlaskClient) -> None:
    response = api.delete("/v1/jobs/never-issued")

    assert response.status_code == 404
    assert response.get_json()["code"] == "JOB_NOT_FOUND"


# -- queue position -----------------------------------------------------------


def test_queued_jobs_show_their_position(api: FlaskClient, store: JobStore) -> None:
    blockers = occupy_workers(api, store)
    queued = [submit(api, params={"n": 1}).get_json()["id"] for _ in range(3)]

    docs = [api.get(f"/v1/jobs/{i}").get_json() for i in queued]
    assert [d["queue_position"] for d in docs] == [0, 1, 2]
    assert [d["message"] for d in docs] == [f"Queued (position {n})" for n in range(3)]

    api.delete(f"/v1/jobs/{queued[0]}")
    assert [api.get(f"/v1/jobs/{i}").get_json()["queue_position"] for i in queued[1:]] == [0, 1]

    wait_done(store, blockers + queued[1:])
    assert "queue_position" not in api.get(f"/v1/jobs/{queued[1]}").get_json()


# -- idempotent ids -----------------------------------------------------------


def test_same_id_and_payload_replays_the_job(api: FlaskClient) -> None:
    job_id = f"report-{uuid.uuid4().hex[:8]}"
    first = submit(api, id=job_id, params={"n": 2}, wait=10)

    again = submit(api, id=job_id, params={"n": 2, "delay": 0}, wait=10)

    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == job_id
    assert again.get_json()["result"] == first.get_json()["result"]


def test_same_id_with_another_payload_is_409(api: FlaskClient) -> None:
    job_id = f"report-{uuid.uuid4().hex[:8]}"
    submit(api, id=job_id, params={"n": 2})

    response = submit(api, id=job_id, params={"n": 3})

    assert response.status_code == 409
    assert response.get_json()["code"] == "ID_CONFLICT"


@pytest.mark.parametrize("job_id", ["results", ".", ".."])
def test_reserved_id_is_refused_and_creates_nothing(
    api: FlaskClient, redis_client: redis.Redis, job_id: str
) -> None:
    response = submit(api, id=job_id, params={"n": 1})

    assert response.status_code == 422
    assert "id" in response.get_json()["errors"]
    assert "Location" not in response.headers
    assert list(redis_client.scan_iter(match=f"*{{default:{job_id}}}*")) == []


def test_the_openapi_document_says_which_ids_are_reserved(api: FlaskClient) -> None:
    spec = api.get("/openapi.json").get_json()
    # The per-type submit schemas share the id field of their common base.
    submit_schema = next(
        schema
        for name, schema in spec["components"]["schemas"].items()
        if name.startswith("Submit_")
    )

    assert submit_schema["properties"]["id"]["not"] == {"enum": ["results", ".", ".."]}


@pytest.fixture
def unconsumed_app(settings: Settings) -> Iterator[Flask]:
    """An API whose queue no worker reads, to count what it enqueues."""
    queue = f"jobgate-idem-{uuid.uuid4().hex[:6]}"
    yield create_app(settings.with_overrides(queue=queue))


def test_concurrent_submits_with_one_id_make_one_job_and_one_task(
    unconsumed_app: Flask, broker_client: redis.Redis
) -> None:
    job_id = f"race-{uuid.uuid4().hex[:8]}"
    answers: list[Any] = []
    start = threading.Barrier(20)

    def submit_once() -> None:
        client = unconsumed_app.test_client()
        start.wait()
        answers.append(submit(client, id=job_id, params={"n": 1}))

    threads = [threading.Thread(target=submit_once) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [a.status_code for a in answers] == [202] * 20
    replayed = [a.headers.get("Idempotent-Replayed") for a in answers]
    assert replayed.count(None) == 1
    assert replayed.count("true") == 19
    queue = unconsumed_app.extensions["jobgate"].settings.queue
    assert waiting(broker_client, queue) == 1


# -- listing and multi-results ------------------------------------------------


@pytest.fixture
def tenant_api(settings: Settings, worker: Process) -> tuple[FlaskClient, dict[str, str]]:
    """The API with keys on, and a tenant of this test's own."""
    tenant = f"t{uuid.uuid4().hex[:8]}"
    key = uuid.uuid4().hex
    app = create_app(settings.with_overrides(api_keys={key: tenant, "other-key": "other"}))
    return app.test_client(), {"Authorization": f"Bearer {key}"}


def test_listing_pages_newest_first_without_duplicates_or_gaps(
    tenant_api: tuple[FlaskClient, dict[str, str]],
) -> None:
    client, auth = tenant_api
    body = {"type": "demo.count", "params": {"n": 1}, "wait": 0}
    made = [client.post("/v1/jobs", json=body, headers=auth).get_json()["id"] for _ in range(5)]

    seen: list[str] = []
    page = client.get("/v1/jobs?limit=2", headers=auth).get_json()
    seen += [j["id"] for j in page["jobs"]]
    client.post("/v1/jobs", json=body, headers=auth)  # added while paging
    while page["next_cursor"]:
        page = client.get(f"/v1/jobs?limit=2&cursor={page['next_cursor']}", headers=auth).get_json()
        seen += [j["id"] for j in page["jobs"]]

    assert seen == list(reversed(made))


def test_listing_filters_by_status_and_type(
    tenant_api: tuple[FlaskClient, dict[str, str]],
) -> None:
    client, auth = tenant_api
    good = {"type": "demo.count", "params": {"n": 1}, "wait": 10}
    bad = {"type": "demo.count", "params": {"n": 2, "fail_at": 0}, "wait": 10}
    done = [client.post("/v1/jobs", json=good, headers=auth).get_json()["id"] for _ in range(3)]
    failed = client.post("/v1/jobs", json=bad, headers=auth).get_json()["id"]

    listed = client.get("/v1/jobs?status=DONE&limit=100", headers=auth).get_json()
    assert [j["id"] for j in listed["jobs"]] == list(reversed(done))
    assert listed["next_cursor"] is None
    failures = client.get("/v1/jobs?status=FAILED", headers=auth).get_json()["jobs"]
    assert [j["id"] for j in failures] == [failed]
    assert client.get("/v1/jobs?type=test.slow", headers=auth).get_json()["jobs"] == []
    assert "result" not in listed["jobs"][0]


def test_listing_forgets_deleted_and_expired_jobs(
    tenant_api: tuple[FlaskClient, dict[str, str]],
) -> None:
    client, auth = tenant_api
    short = {"type": "demo.count", "params": {"n": 1}, "wait": 10, "retention": 1}
    expiring = client.post("/v1/jobs", json=short, headers=auth).get_json()["id"]
    deleted = client.post("/v1/jobs", json={**short, "retention": 600}, headers=auth).get_json()
    client.delete(f"/v1/jobs/{deleted['id']}", headers=auth)

    def listed() -> list[str]:
        return [j["id"] for j in client.get("/v1/jobs", headers=auth).get_json()["jobs"]]

    assert deleted["id"] not in listed()
    wait_until(lambda: expiring not in listed(), 5, "the expired job to leave the list")


def test_listing_shows_only_the_callers_jobs(
    tenant_api: tuple[FlaskClient, dict[str, str]],
) -> None:
    client, auth = tenant_api
    body = {"type": "demo.count", "params": {"n": 1}, "wait": 0}
    mine = client.post("/v1/jobs", json=body, headers=auth).get_json()["id"]
    other = {"Authorization": "Bearer other-key"}

    assert mine not in [j["id"] for j in client.get("/v1/jobs", headers=other).get_json()["jobs"]]
    assert client.get(f"/v1/jobs/{mine}", headers=other).status_code == 404
    assert client.get("/v1/jobs").status_code == 401


def test_bad_cursor_is_422(tenant_api: tuple[FlaskClient, dict[str, str]]) -> None:
    client, auth = tenant_api

    response = client.get("/v1/jobs?cursor=not-a-cursor", headers=auth)

    assert response.status_code == 422
    assert "cursor" in response.get_json()["errors"]


def test_several_results_at_once(api: FlaskClient) -> None:
    done = submit(api, params={"n": 2}, wait=10).get_json()["id"]
    failed = submit(api, params={"n": 2, "fail_at": 1}, wait=10).get_json()["id"]
    running = submit(api, params={"n": 50, "delay": 0.1}).get_json()["id"]

    response = api.get(f"/v1/jobs/results?ids={done},{failed},nobody,{running},bad%7Bid")

    assert response.status_code == 200
    answers = response.get_json()
    assert answers[done] == {
        "status": "DONE",
        "result": {"columns": ["step", "square"], "rows": [[0, 0], [1, 1]]},
    }
    assert answers[failed]["status"] == "FAILED"
    assert answers[failed]["error"]["code"] == "JOB_ERROR"
    assert answers["nobody"] == {"status": "NOT_FOUND"}
    assert answers["bad{id"] == {"status": "NOT_FOUND"}
    assert answers[running]["status"] in ("INITIALIZED", "RUNNING")
    api.delete(f"/v1/jobs/{running}")


def test_more_than_100_ids_is_422(api: FlaskClient) -> None:
    ids = ",".join(f"j{i}" for i in range(101))

    assert api.get(f"/v1/jobs/results?ids={ids}").status_code == 422


def test_cancel_holds_while_no_worker_runs(
    unconsumed_app: Flask, store: JobStore, tmp_path: Path
) -> None:
    client = unconsumed_app.test_client()
    job_id = submit(client, params={"n": 1}).get_json()["id"]
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 200

    # A worker for that queue comes up afterwards and receives the message.
    settings = unconsumed_app.extensions["jobgate"].settings
    late = start_worker(settings, store, tmp_path, f"late-{uuid.uuid4().hex[:6]}")
    try:
        wait_until(lambda: "not run: it is FAILED" in late.output(), 20, "the worker to skip it")
    finally:
        late.stop()
    record = observe(store, job_id)
    assert record.started_ms is None
    assert record.error is not None
    assert record.error["code"] == "CANCELLED_BY_USER"


def test_expired_id_can_be_reused_once_its_tombstone_is_gone(
    api: FlaskClient, settings: Settings
) -> None:
    job_id = f"daily-{uuid.uuid4().hex[:8]}"
    assert submit(api, id=job_id, params={"n": 1}, retention=1, wait=10).status_code == 201
    wait_until(lambda: api.get(f"/v1/jobs/{job_id}").status_code == 410, 5, "expiry")

    refused = submit(api, id=job_id, params={"n": 1})
    assert refused.status_code == 409
    assert refused.get_json()["code"] == "ID_CONFLICT"

    wait_until(
        lambda: api.get(f"/v1/jobs/{job_id}").status_code == 404,
        settings.tombstone_ttl + 3,
        "the tombstone to expire",
    )
    reused = submit(api, id=job_id, params={"n": 2}, wait=10)
    assert reused.status_code == 201
    assert "Idempotent-Replayed" not in reused.headers
    assert len(reused.get_json()["result"]["rows"]) == 2
