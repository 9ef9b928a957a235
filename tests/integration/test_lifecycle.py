"""The job lifecycle over HTTP, with a real redis-server and a real worker."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

from tests.support.api import poll_until, submit, terminal
from tests.support.harness import wait_until
from workers.keys import JobKeys
from workers.states import Status
from workers.store import JobStore

pytestmark = pytest.mark.integration

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HUMAN = re.compile(r"^[A-Z][a-z]{2} [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d GMT \d{4}$")


def test_fast_job_answers_201_with_inline_result(api: FlaskClient) -> None:
    response = submit(api, params={"n": 3}, wait=10)

    assert response.status_code == 201
    doc = response.get_json()
    # Absolute (on the host asked), while links stay relative (docs/api.md §2).
    assert response.headers["Location"] == f"http://localhost/v1/jobs/{doc['id']}"
    assert doc["links"]["self"] == f"/v1/jobs/{doc['id']}"
    assert "Retry-After" not in response.headers
    assert doc["status"] == "DONE"
    assert doc["progress"] == 100
    assert doc["result"] == {"columns": ["step", "square"], "rows": [[0, 0], [1, 1], [2, 4]]}
    assert re.fullmatch(r"Done in \d+\.\d{3} seconds", doc["message"])
    assert HUMAN.match(doc["started"])
    for field in ("created_at", "started_at", "finished_at", "expires_at"):
        assert ISO.match(doc[field]), field
    assert "poll_deadline" not in doc
    assert "error" not in doc
    assert doc["attempt"] == 1
    assert doc["links"] == {
        "self": f"/v1/jobs/{doc['id']}",
        "result": f"/v1/jobs/{doc['id']}/result",
    }


def test_a_percent_the_job_left_unwritten_is_written_by_its_watchdog(api: FlaskClient) -> None:
    # 1 % then 2 % within 50 ms of the start: both held; the job then makes no call.
    location = submit(api, "test.held", params={"seconds": 5}).headers["Location"]

    seen = poll_until(api, location, lambda d: d["progress"] == 2, timeout=5)

    assert seen[-1]["status"] == "RUNNING"
    api.delete(location)


def test_slow_job_answers_202_then_progress_rises_to_done(api: FlaskClient) -> None:
    response = submit(api, params={"n": 20, "delay": 0.1})

    assert response.status_code == 202
    assert int(response.headers["Retry-After"]) >= 1
    first = response.get_json()
    assert first["status"] in ("INITIALIZED", "RUNNING")
    assert ISO.match(first["poll_deadline"])
    seen = poll_until(api, response.headers["Location"], terminal)

    progress = [doc["progress"] for doc in seen]
    assert progress == sorted(progress), "progress never decreases"
    running = [doc for doc in seen if doc["status"] == "RUNNING"]
    assert len({doc["progress"] for doc in running}) >= 3
    assert all(0 <= doc["progress"] <= 99 for doc in running)
    assert any(doc["message"].startswith("Running: step ") for doc in running)
    assert seen[-1]["status"] == "DONE"
    assert seen[-1]["progress"] == 100
    assert len(seen[-1]["result"]["rows"]) == 20


def test_poll_answers_202_with_retry_after_while_running(api: FlaskClient) -> None:
    location = submit(api, params={"n": 30, "delay": 0.1}).headers["Location"]
    poll_until(api, location, lambda doc: doc["status"] == "RUNNING")

    response = api.get(location)

    assert response.status_code == 202
    assert 1 <= int(response.headers["Retry-After"]) <= 30  # half the 60 s poll window
    poll_until(api, location, terminal)
    assert api.get(location).status_code == 200


def test_result_is_204_until_done_then_200(api: FlaskClient) -> None:
    location = submit(api, params={"n": 10, "delay": 0.2}).headers["Location"]

    early = api.get(f"{location}/result")
    assert early.status_code == 204
    assert int(early.headers["Retry-After"]) >= 1
    assert early.data == b""

    poll_until(api, location, terminal)
    done = api.get(f"{location}/result")
    assert done.status_code == 200
    assert done.mimetype == "application/json"
    assert done.get_json()["rows"] == [[i, i * i] for i in range(10)]


def test_failing_job_is_failed_with_job_error(api: FlaskClient) -> None:
    response = submit(api, params={"n": 5, "fail_at": 2}, wait=10)

    assert response.status_code == 201
    doc = response.get_json()
    assert doc["status"] == "FAILED"
    assert doc["message"] == "failed at step 2"
    error = doc["error"]
    assert error["code"] == "JOB_ERROR"
    assert error["message"] == "failed at step 2"
    assert error["retryable"] is False
    assert error["details"] == {"exception": "ValueError"}, "no traceback unless exposed"
    assert error["id"]
    assert "result" not in doc


def test_result_of_failed_job_is_400_job_failed(api: FlaskClient) -> None:
    location = submit(api, params={"n": 5, "fail_at": 0}, wait=10).headers["Location"]

    response = api.get(f"{location}/result")

    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["code"] == "JOB_FAILED"
    assert problem["status"] == 400
    assert problem["error"]["code"] == "JOB_ERROR"
    assert problem["detail"] == "failed at step 0"


def test_prefer_respond_async_answers_at_once(api: FlaskClient) -> None:
    response = api.post(
        "/v1/jobs",
        json={"type": "demo.count", "params": {"n": 1}},
        headers={"Prefer": "respond-async"},
    )

    assert response.status_code == 202
    assert response.headers["Preference-Applied"] == "respond-async"


def test_prefer_wait_lets_a_fast_job_finish(api: FlaskClient) -> None:
    response = api.post(
        "/v1/jobs",
        json={"type": "demo.count", "params": {"n": 2}},
        headers={"Prefer": "wait=10"},
    )

    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "wait=10"


def test_body_wait_wins_over_prefer(api: FlaskClient) -> None:
    response = api.post(
        "/v1/jobs",
        json={"type": "demo.count", "params": {"n": 1, "delay": 2}, "wait": 0},
        headers={"Prefer": "wait=10"},
    )

    assert response.status_code == 202
    assert "Preference-Applied" not in response.headers


def test_long_poll_answers_when_progress_changes(api: FlaskClient) -> None:
    location = submit(api, params={"n": 4, "delay": 0.5}).headers["Location"]
    before = api.get(location).get_json()

    after = api.get(f"{location}?wait=10").get_json()

    changed = (after["status"], after["progress"]) != (before["status"], before["progress"])
    assert changed, "a long poll answers on a change, before its 10 s are up"
    poll_until(api, location, terminal)


def test_unknown_job_is_404_never_queued(api: FlaskClient) -> None:
    for path in ("/v1/jobs/never-issued", "/v1/jobs/never-issued/result", "/v1/jobs/bad%7Bid%7D"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["code"] == "JOB_NOT_FOUND"


def test_heartbeat_off_job_runs_to_the_end_unpolled(api: FlaskClient, store: JobStore) -> None:
    job_id = submit(api, params={"n": 10, "delay": 0.2}, poll_timeout=0).get_json()["id"]
    keys = JobKeys("default", job_id)

    record = wait_until(
        lambda: (r := store.read(keys, poll=False)).status.terminal and r, 30, "the job to end"
    )

    assert record.status is Status.DONE
    assert record.deadline_ms is None


def test_time_limit_exceeded_fails_the_job_and_frees_the_worker(api: FlaskClient) -> None:
    response = submit(api, "test.slow", params={"seconds": 30}, poll_timeout=0)
    location = response.headers["Location"]

    doc = poll_until(api, location, terminal, timeout=20)[-1]

    assert doc["status"] == "FAILED"
    assert doc["error"]["code"] == "TIME_LIMIT_EXCEEDED"
    assert doc["error"]["retryable"] is False
    assert submit(api, params={"n": 1}, wait=10).status_code == 201


def test_result_too_large_fails_without_storing_it(
    api: FlaskClient, redis_client: object, store: JobStore
) -> None:
    response = submit(api, "test.big", params={"size": 2 * 1024 * 1024}, wait=10)

    doc = response.get_json()
    assert doc["status"] == "FAILED"
    assert doc["error"]["code"] == "RESULT_TOO_LARGE"
    assert not store.redis.exists(JobKeys("default", doc["id"]).result)


def test_result_that_is_not_json_fails_as_internal_error(api: FlaskClient) -> None:
    doc = submit(api, "test.not_json", wait=10).get_json()

    assert doc["status"] == "FAILED"
    assert doc["error"]["code"] == "INTERNAL_ERROR"
    assert doc["error"]["retryable"] is True


def test_job_types_lists_demo_count(api: FlaskClient) -> None:
    response = api.get("/v1/job-types")

    assert response.status_code == 200
    types = {t["name"]: t for t in response.get_json()["job_types"]}
    demo = types["demo.count"]
    assert demo["tabular"] is True
    assert demo["max_runtime"] == 14400
    assert set(demo["params_schema"]["properties"]) == {"n", "delay", "fail_at", "ignore_cancel"}
    assert demo["params_schema"]["required"] == ["n"]
    assert types["test.slow"]["max_runtime"] == 2
