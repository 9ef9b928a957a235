"""/readyz: ready only when a live worker consumes the job queue; /healthz is liveness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from jobgate.redis_server import RedisServer
from tests.integration.conftest import make_test_settings
from tests.support.harness import Process, start_jobgate_worker
from workers.config import Settings
from workers.store import JobStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ready_settings(redis_server: RedisServer) -> Settings:
    # A queue no other test's worker consumes.
    return make_test_settings(redis_server.url, queue="jobgate-readyz")


@pytest.fixture(scope="module")
def ready_app(ready_settings: Settings) -> Flask:
    return create_app(ready_settings)


@pytest.fixture(scope="module")
def sweep_only_worker(ready_settings: Settings, log_dir: Path) -> Iterator[Process]:
    store = JobStore.from_settings(ready_settings)
    process = start_jobgate_worker(
        ready_settings, store, log_dir, "readyz-sweeper", sweep_only=True
    )
    yield process
    process.stop()


def test_a_worker_on_other_queues_only_is_not_ready(
    ready_app: Flask, sweep_only_worker: Process
) -> None:
    client: FlaskClient = ready_app.test_client()

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "no-workers"
    assert "'jobgate-readyz'" in body["reason"]
    assert any(name.startswith("readyz-sweeper@") for name in body["workers"])
    assert body["consumers"] == []
    assert client.get("/healthz").status_code == 200


def test_a_worker_on_the_job_queue_makes_it_ready(
    ready_app: Flask, ready_settings: Settings, sweep_only_worker: Process, log_dir: Path
) -> None:
    store = JobStore.from_settings(ready_settings)
    worker = start_jobgate_worker(ready_settings, store, log_dir, "readyz-worker")
    try:
        response = ready_app.test_client().get("/readyz")
    finally:
        worker.stop()

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["queue"] == "jobgate-readyz"
    assert [name.split("@")[0] for name in body["consumers"]] == ["readyz-worker"]
