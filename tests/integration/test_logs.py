"""Logs an operator can follow: JSON lines from gunicorn and from a real worker,
one request id from the submit's access line to the worker's lines for its job."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from jobgate.redis_server import RedisServer
from tests.integration.conftest import make_test_settings
from tests.support.harness import (
    LiveServer,
    Process,
    start_beat,
    start_jobgate_worker,
    wait_until,
)
from workers.config import Settings
from workers.store import JobStore

pytestmark = pytest.mark.integration


def json_lines(process: Process) -> list[dict[str, Any]]:
    """Every line of the process's output, each parsed (one that is not JSON fails)."""
    return [json.loads(line) for line in process.output().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def json_settings(redis_server: RedisServer) -> Settings:
    # A queue of its own: only this module's worker takes these jobs.
    return make_test_settings(redis_server.url, log_format="json", queue="jobgate-logs")


@pytest.fixture(scope="module")
def json_worker(json_settings: Settings, log_dir: Path) -> Iterator[Process]:
    store = JobStore.from_settings(json_settings)
    process = start_jobgate_worker(json_settings, store, log_dir, "logs-worker")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def json_server(
    json_settings: Settings, json_worker: Process, log_dir: Path
) -> Iterator[LiveServer]:
    server = LiveServer(json_settings, log_dir)
    yield server
    server.stop()


def test_a_submit_is_followed_by_request_id_from_api_to_worker(
    json_server: LiveServer, json_worker: Process
) -> None:
    body: dict[str, Any] = {"type": "demo.count", "params": {"n": 3}, "wait": 10}

    response = requests.post(
        f"{json_server.url}/v1/jobs", json=body, headers={"X-Request-ID": "trace-42"}, timeout=15
    )

    assert response.status_code == 201
    assert response.headers["X-Request-ID"] == "trace-42"
    job_id = response.json()["id"]
    access = wait_until(
        lambda: [
            line
            for line in json_lines(json_server)
            if line.get("logger") == "jobgate.access" and line.get("request_id") == "trace-42"
        ],
        30,
        "the submit's access line",
    )
    assert access[0]["method"] == "POST"
    assert access[0]["route"] == "/v1/jobs"
    assert access[0]["status"] == 201
    assert access[0]["tenant"] == "default"
    assert access[0]["duration_ms"] > 0
    assert {"time", "level", "message"} <= set(access[0])
    worker_lines = wait_until(
        lambda: [line for line in json_lines(json_worker) if line.get("job_id") == job_id],
        30,
        "the worker's lines for the job",
    )
    messages = [line["message"] for line in worker_lines]
    assert f"job {job_id} started" in messages
    assert f"job {job_id} ended: done" in messages
    for line in worker_lines:
        assert line["request_id"] == "trace-42"
        assert line["tenant"] == "default"
        assert line["type"] == "demo.count"
        assert line["attempt"] == 1


def test_every_line_of_gunicorn_and_the_worker_is_json(
    json_server: LiveServer, json_worker: Process
) -> None:
    requests.get(f"{json_server.url}/healthz", timeout=10)

    api_lines, worker_lines = json_lines(json_server), json_lines(json_worker)

    assert any(line["logger"] == "gunicorn.error" for line in api_lines)
    assert any(line["message"].endswith("ready.") for line in worker_lines)
    for line in api_lines + worker_lines:
        assert {"time", "level", "logger", "message"} <= set(line)


def test_a_poll_is_logged_under_its_route_not_its_path(json_server: LiveServer) -> None:
    url = f"{json_server.url}/v1/jobs/no-such-job"

    response = requests.get(url, headers={"X-Request-ID": "bad id with spaces"}, timeout=10)

    generated = response.headers["X-Request-ID"]
    assert response.status_code == 404
    assert generated != "bad id with spaces" and len(generated) == 32
    [line] = wait_until(
        lambda: [x for x in json_lines(json_server) if x.get("request_id") == generated],
        30,
        "the poll's access line",
    )
    assert line["route"] == "/v1/jobs/<job_id>"
    assert line["status"] == 404


def test_every_answer_echoes_a_request_id(client: FlaskClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "abc.def:1"})
    generated = client.get("/v1/jobs/none")

    assert given.headers["X-Request-ID"] == "abc.def:1"
    assert len(generated.headers["X-Request-ID"]) == 32


def test_the_access_line_is_written_by_the_app(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="jobgate.access"):
        client.get("/v1/job-types", headers={"X-Request-ID": "rid-7"})

    [record] = [r for r in caplog.records if r.name == "jobgate.access"]
    assert record.__dict__["request_id"] == "rid-7"
    assert record.__dict__["route"] == "/v1/job-types"
    assert record.__dict__["method"] == "GET"
    assert record.__dict__["status"] == 200


def test_every_line_of_beat_is_json(json_settings: Settings, log_dir: Path) -> None:
    beat = start_beat(json_settings, log_dir, "logs-beat")
    try:
        lines = json_lines(beat)
    finally:
        beat.stop()

    assert any(line["message"].startswith("Scheduler: Sending due task") for line in lines)
    assert all(line["logger"] for line in lines)
