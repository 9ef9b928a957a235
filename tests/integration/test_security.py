"""API keys, tenant isolation, the active-job cap, rate limits, hostile input."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import create_app
from tests.support.harness import Process, wait_until
from workers.config import Settings
from workers.errors import ConfigError

pytestmark = pytest.mark.integration

OWN, OTHER = "key-own-" + uuid.uuid4().hex, "key-other-" + uuid.uuid4().hex
NO_KEY: dict[str, str] = {}
WRONG = {"Authorization": "Bearer not-a-key"}
OWN_BEARER = {"Authorization": f"Bearer {OWN}"}
OWN_X_API_KEY = {"X-API-Key": OWN}
OTHER_BEARER = {"Authorization": f"Bearer {OTHER}"}


@pytest.fixture(scope="module")
def tenants() -> tuple[str, str]:
    return f"own{uuid.uuid4().hex[:6]}", f"other{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def secured(settings: Settings, tenants: tuple[str, str]) -> Flask:
    own, other = tenants
    return create_app(settings.with_overrides(api_keys={OWN: own, OTHER: other}))


@pytest.fixture
def client(secured: Flask, worker: Process) -> FlaskClient:
    return secured.test_client()


@pytest.fixture
def own_job(client: FlaskClient) -> str:
    body = {"type": "demo.count", "params": {"n": 2}, "wait": 10}
    response = client.post("/v1/jobs", json=body, headers=OWN_BEARER)
    assert response.status_code == 201
    return str(response.get_json()["id"])


# -- the matrix: every endpoint x {no key, wrong key, other tenant, own key} --

Request = Callable[[FlaskClient, str, dict[str, str]], TestResponse]

ENDPOINTS: dict[str, Request] = {
    "status": lambda c, job, h: c.get(f"/v1/jobs/{job}", headers=h),
    "long poll": lambda c, job, h: c.get(f"/v1/jobs/{job}?wait=0.1", headers=h),
    "result": lambda c, job, h: c.get(f"/v1/jobs/{job}/result", headers=h),
    "delete": lambda c, job, h: c.delete(f"/v1/jobs/{job}", headers=h),
    "results": lambda c, job, h: c.get(f"/v1/jobs/results?ids={job}", headers=h),
    "list": lambda c, job, h: c.get("/v1/jobs", headers=h),
    "job types": lambda c, job, h: c.get("/v1/job-types", headers=h),
    "submit": lambda c, job, h: c.post(
        "/v1/jobs", json={"type": "demo.count", "params": {"n": 1}, "wait": 0}, headers=h
    ),
}


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
@pytest.mark.parametrize("headers", [NO_KEY, WRONG], ids=["no key", "wrong key"])
def test_without_a_valid_key_every_endpoint_is_401(
    client: FlaskClient, own_job: str, endpoint: str, headers: dict[str, str]
) -> None:
    response = ENDPOINTS[endpoint](client, own_job, headers)

    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "UNAUTHORIZED"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("endpoint", ["status", "long poll", "result", "delete"])
def test_another_tenants_job_is_404(client: FlaskClient, own_job: str, endpoint: str) -> None:
    response = ENDPOINTS[endpoint](client, own_job, OTHER_BEARER)

    assert response.status_code == 404
    assert response.get_json()["code"] == "JOB_NOT_FOUND"
    assert client.get(f"/v1/jobs/{own_job}", headers=OWN_BEARER).status_code == 200


def test_another_tenants_job_is_not_found_in_multi_results(
    client: FlaskClient, own_job: str
) -> None:
    response = ENDPOINTS["results"](client, own_job, OTHER_BEARER)

    assert response.get_json() == {own_job: {"status": "NOT_FOUND"}}


def test_another_tenants_job_is_not_listed(client: FlaskClient, own_job: str) -> None:
    theirs = [j["id"] for j in ENDPOINTS["list"](client, own_job, OTHER_BEARER).get_json()["jobs"]]
    mine = [j["id"] for j in ENDPOINTS["list"](client, own_job, OWN_BEARER).get_json()["jobs"]]

    assert own_job not in theirs
    assert own_job in mine


@pytest.mark.parametrize("headers", [OWN_BEARER, OWN_X_API_KEY], ids=["bearer", "x-api-key"])
def test_own_key_reaches_every_endpoint(
    client: FlaskClient, own_job: str, headers: dict[str, str]
) -> None:
    expected = {
        "status": 200,
        "long poll": 200,
        "result": 200,
        "results": 200,
        "list": 200,
        "job types": 200,
        "submit": 202,
        "delete": 204,  # last: it deletes the job
    }
    for endpoint, status in expected.items():
        assert ENDPOINTS[endpoint](client, own_job, headers).status_code == status, endpoint


def test_two_tenants_may_use_the_same_client_id(client: FlaskClient) -> None:
    job_id = f"report-{uuid.uuid4().hex[:6]}"
    mine = {"type": "demo.count", "params": {"n": 2}, "id": job_id, "wait": 10}
    theirs = {"type": "demo.count", "params": {"n": 3}, "id": job_id, "wait": 10}

    assert client.post("/v1/jobs", json=mine, headers=OWN_BEARER).status_code == 201
    assert client.post("/v1/jobs", json=theirs, headers=OTHER_BEARER).status_code == 201

    own_rows = client.get(f"/v1/jobs/{job_id}/result", headers=OWN_BEARER).get_json()["rows"]
    other_rows = client.get(f"/v1/jobs/{job_id}/result", headers=OTHER_BEARER).get_json()["rows"]
    assert (len(own_rows), len(other_rows)) == (2, 3)


def test_ops_endpoints_need_no_key(client: FlaskClient) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_keys_file_holds_digests_only(settings: Settings, tmp_path: Path) -> None:
    key = uuid.uuid4().hex
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# tenant:sha256\nfiled:{hashlib.sha256(key.encode()).hexdigest()}\n")
    app = create_app(settings.with_overrides(api_keys_file=str(keys_file)))

    client = app.test_client()

    assert (
        client.get("/v1/job-types", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    )
    assert client.get("/v1/job-types", headers={"Authorization": "Bearer filed"}).status_code == 401


def test_open_api_on_a_public_address_refuses_to_start(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="JOBGATE_BIND"):
        create_app(settings.with_overrides(bind_host="0.0.0.0"))
    assert create_app(settings.with_overrides(bind_host="0.0.0.0", auth="off"))


# -- the tenant's active-job cap ------------------------------------------------


def capped_app(settings: Settings, cap: int) -> tuple[Flask, dict[str, str]]:
    """Keys on, a tenant of its own, a queue no worker reads (jobs stay live)."""
    key = uuid.uuid4().hex
    app = create_app(
        settings.with_overrides(
            api_keys={key: f"capped{uuid.uuid4().hex[:6]}"},
            tenant_max_active=cap,
            queue=f"jobgate-capped-{uuid.uuid4().hex[:6]}",
        )
    )
    return app, {"Authorization": f"Bearer {key}"}


def test_concurrent_submits_cannot_overshoot_the_cap(settings: Settings) -> None:
    app, auth = capped_app(settings, cap=5)
    answers: list[TestResponse] = []
    start = threading.Barrier(20)

    def submit_once() -> None:
        client = app.test_client()
        start.wait()
        body = {"type": "demo.count", "params": {"n": 1}, "wait": 0}
        answers.append(client.post("/v1/jobs", json=body, headers=auth))

    threads = [threading.Thread(target=submit_once) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    codes = sorted(a.status_code for a in answers)
    assert codes == [202] * 5 + [429] * 15
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.get_json()["code"] == "TOO_MANY_JOBS"
    assert int(refused.headers["Retry-After"]) > 0


def test_an_ended_job_frees_its_place_under_the_cap(settings: Settings) -> None:
    app, auth = capped_app(settings, cap=1)
    client = app.test_client()
    body: dict[str, Any] = {"type": "demo.count", "params": {"n": 1}, "wait": 0}
    first = client.post("/v1/jobs", json=body, headers=auth).get_json()["id"]
    assert client.post("/v1/jobs", json=body, headers=auth).status_code == 429

    client.delete(f"/v1/jobs/{first}", headers=auth)

    assert client.post("/v1/jobs", json=body, headers=auth).status_code == 202


def test_a_timed_out_job_leaves_the_cap_unread(settings: Settings) -> None:
    app, auth = capped_app(settings, cap=1)
    client = app.test_client()
    body: dict[str, Any] = {"type": "demo.count", "params": {"n": 1}, "wait": 0}
    client.post("/v1/jobs", json={**body, "poll_timeout": 1}, headers=auth)

    # Nobody reads the first job again: its heartbeat lapses on its own.
    wait_until(
        lambda: client.post("/v1/jobs", json=body, headers=auth).status_code == 202,
        5,
        "the unpolled job to stop counting",
    )


# -- rate limit -------------------------------------------------------------------


def test_a_burst_past_the_rate_limit_is_429_then_allowed_again(settings: Settings) -> None:
    key = uuid.uuid4().hex
    app = create_app(
        settings.with_overrides(api_keys={key: "limited"}, rate_limit="5/second;50/minute")
    )
    client, auth = app.test_client(), {"Authorization": f"Bearer {key}"}

    codes = [client.get("/v1/job-types", headers=auth) for _ in range(8)]

    assert [r.status_code for r in codes[:5]] == [200] * 5
    limited = codes[5]
    assert limited.status_code == 429
    assert limited.get_json()["code"] == "RATE_LIMITED"
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 2
    time.sleep(retry_after)
    assert client.get("/v1/job-types", headers=auth).status_code == 200


def test_under_a_rate_limit_a_poll_keeps_its_own_retry_after(settings: Settings) -> None:
    key = uuid.uuid4().hex
    app = create_app(settings.with_overrides(api_keys={key: "paced"}, rate_limit="100/minute"))
    client, auth = app.test_client(), {"Authorization": f"Bearer {key}"}
    body = {"type": "demo.count", "params": {"n": 30, "delay": 0.5}, "wait": 0}
    job_id = client.post("/v1/jobs", json=body, headers=auth).get_json()["id"]

    poll = client.get(f"/v1/jobs/{job_id}", headers=auth)

    assert poll.status_code == 202
    assert poll.headers["X-RateLimit-Limit"] == "100"
    # The job's advice (at most 10 s), not the minute window's reset (~60 s).
    assert 1 <= int(poll.headers["Retry-After"]) <= 10
    assert "X-Jobgate-Limiter-Retry-After" not in poll.headers
    client.delete(f"/v1/jobs/{job_id}", headers=auth)


def test_the_rate_limit_is_one_budget_per_key_across_endpoints(settings: Settings) -> None:
    key = uuid.uuid4().hex
    app = create_app(settings.with_overrides(api_keys={key: "limited2"}, rate_limit="3/minute"))
    client, auth = app.test_client(), {"Authorization": f"Bearer {key}"}

    answers = [
        client.get("/v1/job-types", headers=auth).status_code,
        client.get("/v1/jobs", headers=auth).status_code,
        client.get("/v1/jobs/x", headers=auth).status_code,
        client.get("/v1/jobs", headers=auth).status_code,
    ]

    assert answers == [200, 200, 404, 429]


# -- hostile input ------------------------------------------------------------------

HOSTILE_BODIES: dict[str, bytes] = {
    "id with braces": b'{"type":"demo.count","params":{"n":1},"id":"a{b}"}',
    "id with colon": b'{"type":"demo.count","params":{"n":1},"id":"t:x"}',
    "id with star": b'{"type":"demo.count","params":{"n":1},"id":"*"}',
    "id with slash": b'{"type":"demo.count","params":{"n":1},"id":"a/b"}',
    "id with newline": b'{"type":"demo.count","params":{"n":1},"id":"abc\\n"}',
    "id with unicode": b'{"type":"demo.count","params":{"n":1},"id":"r\xc3\xa9sum\xc3\xa9"}',
    "type with NUL": b'{"type":"demo.count\\u0000","params":{"n":1}}',
    "lone surrogate": b'{"type":"demo.count","params":{"n":1},"id":"\\ud800"}',
    "invalid utf-8": b'{"type":"demo.count","params":{"n":1},"id":"\xff\xfe"}',
    "10000-deep nesting": b'{"type":"demo.count","params":{"n":1,"x":'
    + b"[" * 10_000
    + b"]" * 10_000
    + b"}}",
    "40-deep params": b'{"type":"demo.count","params":{"n":1,"x":' + b"[" * 40 + b"]" * 40 + b"}}",
    "huge integer": b'{"type":"demo.count","params":{"n":1' + b"0" * 400 + b"}}",
    "huge float": b'{"type":"demo.count","params":{"n":1,"delay":1e400}}',
    "2 MiB body": b'{"type":"demo.count","params":{"n":1},"pad":"' + b"x" * (2 << 20) + b'"}',
}


@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
def test_hostile_submit_is_4xx_and_leaves_nothing(
    client: FlaskClient, redis_client: redis.Redis, tenants: tuple[str, str], name: str
) -> None:
    own, _ = tenants

    def own_keys() -> set[str]:
        return set(redis_client.scan_iter(match=f"*{{{own}:*"))

    before = own_keys()
    response = client.post(
        "/v1/jobs",
        data=HOSTILE_BODIES[name],
        content_type="application/json",
        headers=OWN_BEARER,
    )

    assert 400 <= response.status_code < 500, (name, response.status_code)
    assert response.mimetype == "application/problem+json"
    assert own_keys() == before


def test_hostile_ids_in_the_path_are_404(client: FlaskClient) -> None:
    for job_id in ("a%7Bb%7D", "t%3Ax", "%2A", "a%0A", "r%C3%A9sum%C3%A9", "x" * 65):
        assert client.get(f"/v1/jobs/{job_id}", headers=OWN_BEARER).status_code == 404, job_id
