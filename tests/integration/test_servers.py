"""The real servers: gunicorn serving the API, readiness, the OpenAPI document."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from tests.support.harness import LiveServer

pytestmark = pytest.mark.integration


def test_gunicorn_serves_a_job_from_submit_to_result(live_server: LiveServer) -> None:
    body: dict[str, Any] = {"type": "demo.count", "params": {"n": 5, "delay": 0.1}, "wait": 0}
    submitted = requests.post(f"{live_server.url}/v1/jobs", json=body, timeout=10)
    assert submitted.status_code == 202
    location = submitted.headers["Location"]
    assert location == f"{live_server.url}/v1/jobs/{submitted.json()['id']}"

    doc = requests.get(f"{location}?wait=10", timeout=15).json()
    while doc["status"] not in ("DONE", "FAILED"):
        doc = requests.get(f"{location}?wait=10", timeout=15).json()

    assert doc["status"] == "DONE"
    result = requests.get(f"{location}/result", timeout=10)
    assert result.status_code == 200
    assert result.json()["rows"][-1] == [4, 16]


def test_gunicorn_ignores_forwarded_headers_when_no_proxy_is_trusted(
    live_server: LiveServer,
) -> None:
    body: dict[str, Any] = {"type": "demo.count", "params": {"n": 1}, "wait": 0}
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}

    submitted = requests.post(f"{live_server.url}/v1/jobs", json=body, headers=forged, timeout=10)

    assert submitted.status_code in (201, 202)
    assert submitted.headers["Location"].startswith(f"{live_server.url}/v1/jobs/")


def test_gunicorn_waits_for_a_fast_job(live_server: LiveServer) -> None:
    body: dict[str, Any] = {"type": "demo.count", "params": {"n": 3}, "wait": 10}

    response = requests.post(f"{live_server.url}/v1/jobs", json=body, timeout=15)

    assert response.status_code == 201
    assert response.json()["result"]["rows"] == [[0, 0], [1, 1], [2, 4]]


def test_ready_when_redis_answers_and_a_worker_was_seen(api: FlaskClient) -> None:
    response = api.get("/readyz")

    assert response.status_code == 200
    body = response.get_json()
    assert body["redis"] is True
    assert any(name.startswith("jobgate-test@") for name in body["workers"])


def test_healthz_answers(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_openapi_documents_every_endpoint(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()

    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) >= {
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/result",
        "/v1/job-types",
        "/healthz",
        "/readyz",
    }
    submit = spec["paths"]["/v1/jobs"]["post"]
    assert {"201", "202", "400", "409", "413", "415", "422", "503"} <= set(submit["responses"])
    body = spec["components"]["schemas"]["SubmitRequest"]
    assert body["discriminator"]["propertyName"] == "type"
    assert "demo.count" in body["discriminator"]["mapping"]
    demo = spec["components"]["schemas"]["Submit_demo.count"]
    assert set(demo["required"]) == {"type", "params"}
    assert demo["properties"]["poll_timeout"]["type"] == "integer"
    poll = spec["paths"]["/v1/jobs/{job_id}"]["get"]
    assert any(p["name"] == "wait" for p in poll["parameters"])
