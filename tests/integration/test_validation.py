"""Bad input gets a clear problem+json and leaves nothing behind."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from app import create_app
from jobgate.redis_server import RedisServer
from tests.integration.conftest import make_test_settings
from workers.broker import queue_lists
from workers.config import Settings

pytestmark = pytest.mark.integration


def leftovers(redis_client: redis.Redis, job_id: str, settings: Settings) -> tuple[list[str], int]:
    keys = [k for k in redis_client.scan_iter(match=f"*{job_id}*")]
    return keys, sum(int(redis_client.llen(name)) for name in queue_lists(settings.queue))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "no.such.type"}, "type"),
        ({}, "type"),
        ({"type": 7}, "type"),
        ({"type": "demo.count", "params": {}}, "params"),
        ({"type": "demo.count", "params": {"n": 0}}, "params"),
        ({"type": "demo.count", "params": {"n": 100001}}, "params"),
        ({"type": "demo.count", "params": {"n": "5"}}, "params"),
        ({"type": "demo.count", "params": {"n": 3, "fail_at": -1}}, "params"),
        ({"type": "demo.count", "params": {"n": 3, "delay": 61}}, "params"),
        ({"type": "demo.count", "params": {"n": 3, "colour": "red"}}, "params"),
        ({"type": "demo.count", "params": [1]}, "params"),
        ({"type": "demo.count", "params": {"n": 1, "ignore_cancel": 0}}, "params"),
        ({"type": "demo.count", "params": {"n": 1, "ignore_cancel": "yes"}}, "params"),
        ({"type": "demo.count", "params": {"n": 1, "fail_at": 2**70}}, "params"),
        ({"type": "demo.count", "params": {"n": 1}, "wait": 61}, "wait"),
        ({"type": "demo.count", "params": {"n": 1}, "wait": -1}, "wait"),
        ({"type": "demo.count", "params": {"n": 1}, "poll_timeout": -1}, "poll_timeout"),
        ({"type": "demo.count", "params": {"n": 1}, "poll_timeout": 86401}, "poll_timeout"),
        ({"type": "demo.count", "params": {"n": 1}, "poll_timeout": 1.5}, "poll_timeout"),
        ({"type": "demo.count", "params": {"n": 1}, "retention": 0}, "retention"),
        ({"type": "demo.count", "params": {"n": 1}, "retention": 604801}, "retention"),
        ({"type": "demo.count", "params": {"n": 1}, "id": "has space"}, "id"),
        ({"type": "demo.count", "params": {"n": 1}, "id": "a{b}"}, "id"),
        ({"type": "demo.count", "params": {"n": 1}, "id": "x" * 65}, "id"),
        ({"type": "demo.count", "params": {"n": 1}, "unknown": 1}, "unknown"),
    ],
)
def test_invalid_submit_is_422_with_field_errors(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings, body: dict, field: str
) -> None:
    marker = f"refused-{uuid.uuid4().hex[:12]}"
    body = {"id": marker, **body} if "id" not in body else body
    _, queued_before = leftovers(redis_client, marker, settings)

    response = client.post("/v1/jobs", json=body)

    assert response.status_code == 422, response.data
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["code"] == "VALIDATION_ERROR"
    assert problem["status"] == 422
    assert field in problem["errors"], problem
    assert leftovers(redis_client, marker, settings) == ([], queued_before)


def test_body_that_is_not_an_object_is_422(client: FlaskClient) -> None:
    response = client.post("/v1/jobs", json=[1, 2])

    assert response.status_code == 422
    assert response.get_json()["code"] == "VALIDATION_ERROR"


def test_malformed_json_is_400(client: FlaskClient) -> None:
    response = client.post("/v1/jobs", data=b'{"type": ', content_type="application/json")

    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "MALFORMED_JSON"


def test_invalid_utf8_is_400(client: FlaskClient) -> None:
    response = client.post("/v1/jobs", data=b'{"type": "\xff"}', content_type="application/json")

    assert response.status_code == 400


def test_body_that_is_not_json_is_415(client: FlaskClient) -> None:
    response = client.post("/v1/jobs", data="type=demo.count", content_type="text/plain")

    assert response.status_code == 415
    assert response.get_json()["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_body_over_max_body_is_413(client: FlaskClient, settings: Settings) -> None:
    padding = "x" * (settings.max_body + 1)
    body: dict[str, Any] = {"type": "demo.count", "params": {"n": 1, "pad": padding}}

    response = client.post("/v1/jobs", json=body)

    assert response.status_code == 413
    assert response.get_json()["code"] == "PAYLOAD_TOO_LARGE"


def test_poll_wait_out_of_range_is_422(client: FlaskClient) -> None:
    response = client.get("/v1/jobs/some-id?wait=31")

    assert response.status_code == 422
    assert "wait" in response.get_json()["errors"]


def test_unknown_route_is_problem_json(client: FlaskClient) -> None:
    response = client.get("/v1/nothing-here")

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_redis_down_is_503_fast_and_recovers(tmp_path: Any) -> None:
    with RedisServer() as server:
        app = create_app(make_test_settings(server.url))
        client = app.test_client()
        assert (
            client.post(
                "/v1/jobs", json={"type": "demo.count", "params": {"n": 1}, "wait": 0}
            ).status_code
            == 202
        )
        server.stop()

        started = time.monotonic()
        response = client.post("/v1/jobs", json={"type": "demo.count", "params": {"n": 1}})
        elapsed = time.monotonic() - started

        assert response.status_code == 503
        assert response.get_json()["code"] == "BACKEND_UNAVAILABLE"
        assert int(response.headers["Retry-After"]) > 0
        assert elapsed < 5, "a bounded timeout, not a hang"
        assert client.get("/v1/jobs/any-id").status_code == 503
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
        assert b"jobgate_redis_up 0.0" in client.get("/metrics").data

        server.start()
        again = client.post("/v1/jobs", json={"type": "demo.count", "params": {"n": 1}, "wait": 0})
        assert again.status_code == 202
