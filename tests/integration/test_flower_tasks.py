"""Flower shows each job as itself: its id, its real state, its progress.

A real worker with task events on (JOBGATE_TASK_EVENTS) and a real
``jobgate flower`` process, read through Flower's HTTP API under basic auth,
as an operator would.
"""

from __future__ import annotations

import ast
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask.testing import FlaskClient

from app import create_app
from app.auth import DEFAULT_TENANT
from jobgate.redis_server import RedisServer, free_port
from tests.integration.conftest import make_test_settings
from tests.support.api import submit
from tests.support.harness import BIN, Process, start_worker, wait_until
from workers.broker import UNACKED, Broker
from workers.config import Settings
from workers.states import Status, status_of_celery_state
from workers.store import JobStore

pytestmark = pytest.mark.integration

PASSWORD = "flower-" + uuid.uuid4().hex
WORKER = "flowertasks"


@pytest.fixture(scope="module")
def events_settings() -> Iterator[Settings]:
    with RedisServer() as server:
        yield make_test_settings(
            server.url,
            queue="jobgate-flower-" + uuid.uuid4().hex[:6],
            task_events=True,
            flower_port=free_port(),
            flower_password=PASSWORD,
        )


@pytest.fixture(scope="module")
def flower_url(events_settings: Settings, log_dir: Path) -> Iterator[str]:
    store = JobStore.from_settings(events_settings)
    worker = start_worker(events_settings, store, log_dir, WORKER)
    flower = Process([str(BIN / "jobgate"), "flower"], events_settings, log_dir / "flower-t.log")
    url = f"http://127.0.0.1:{events_settings.flower_port}"

    def worker_listed() -> bool:
        if not flower.alive():
            raise RuntimeError(f"flower died:\n{flower.output()}")
        try:
            answer = requests.get(f"{url}/api/workers", auth=("admin", PASSWORD), timeout=10)
        except requests.ConnectionError:
            return False
        return answer.ok and any(name.startswith(WORKER) for name in answer.json())

    try:
        wait_until(worker_listed, 60, "Flower to list the worker", step=0.5)
        yield url
    finally:
        flower.stop()
        worker.stop()


@pytest.fixture(scope="module")
def events_api(events_settings: Settings) -> FlaskClient:
    return create_app(events_settings).test_client()


def task_info(url: str, task_id: str) -> dict[str, Any] | None:
    answer = requests.get(f"{url}/api/task/info/{task_id}", auth=("admin", PASSWORD), timeout=10)
    return answer.json() if answer.ok else None


def task_in_state(url: str, task_id: str, state: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_until(
        lambda: (info := task_info(url, task_id)) and info["state"] == state and info,
        60,
        f"Flower to show task {task_id} as {state}",
        step=0.5,
    )
    return found


def test_a_failed_job_is_a_failure_task_named_after_its_error_code(
    flower_url: str, events_api: FlaskClient, events_settings: Settings
) -> None:
    job = submit(events_api, params={"n": 3, "fail_at": 1}, wait=20).get_json()
    assert job["status"] == "FAILED"

    info = task_in_state(flower_url, f"{DEFAULT_TENANT}:{job['id']}", "FAILURE")

    assert info["uuid"] == f"{DEFAULT_TENANT}:{job['id']}"
    assert info["exception"] == "JOB_ERROR('failed at step 1')"
    assert status_of_celery_state(info["state"]) == Status.FAILED
    # Raised to show FAILURE, yet acked as before: nothing waits or is held.
    broker = Broker(redis.Redis.from_url(events_settings.redis_url), [events_settings.queue])
    wait_until(
        lambda: sum(broker.waiting().values()) == 0 and broker.client.hlen(UNACKED) == 0,
        30,
        "the ack",
    )


def test_flowers_search_finds_a_job_by_its_bare_id(
    flower_url: str, events_api: FlaskClient
) -> None:
    job = submit(events_api, params={"n": 1}, wait=20).get_json()
    task_in_state(flower_url, f"{DEFAULT_TENANT}:{job['id']}", "SUCCESS")

    answer = requests.get(
        f"{flower_url}/api/tasks",
        params={"search": job["id"]},
        auth=("admin", PASSWORD),
        timeout=10,
    )

    assert list(answer.json()) == [f"{DEFAULT_TENANT}:{job['id']}"]


def test_a_done_job_is_a_success_task_with_a_summary_not_its_result(
    flower_url: str, events_api: FlaskClient
) -> None:
    job = submit(events_api, params={"n": 3}, wait=20).get_json()
    assert job["status"] == "DONE"

    info = task_in_state(flower_url, f"{DEFAULT_TENANT}:{job['id']}", "SUCCESS")

    assert ast.literal_eval(info["result"]).startswith("DONE in ")
    assert "square" not in info["result"]
    assert status_of_celery_state(info["state"]) == Status.DONE


def test_a_running_job_shows_its_percent_progress_and_message(
    flower_url: str, events_api: FlaskClient
) -> None:
    job = submit(events_api, params={"n": 60, "delay": 0.5}, wait=0).get_json()
    task_id = f"{DEFAULT_TENANT}:{job['id']}"

    info = task_in_state(flower_url, task_id, "PROGRESS")
    later = wait_until(
        lambda: (i := task_info(flower_url, task_id)) and i["result"] != info["result"] and i,
        30,
        "a later progress event",
        step=0.5,
    )

    percent, _, message = later["result"].partition("% ")
    assert 0 < int(percent) < 100
    assert message.startswith("Running: step ")
    assert status_of_celery_state(later["state"]) == Status.RUNNING
    events_api.delete(f"/v1/jobs/{job['id']}")


def test_flowers_task_list_filters_the_failed_jobs_exactly(
    flower_url: str, events_api: FlaskClient
) -> None:
    failed = {submit(events_api, params={"n": 2, "fail_at": 0}, wait=20).get_json()["id"]}
    done = {submit(events_api, params={"n": 1}, wait=20).get_json()["id"]}
    for job_id in failed:
        task_in_state(flower_url, f"{DEFAULT_TENANT}:{job_id}", "FAILURE")
    for job_id in done:
        task_in_state(flower_url, f"{DEFAULT_TENANT}:{job_id}", "SUCCESS")

    answer = requests.get(
        f"{flower_url}/api/tasks", params={"state": "FAILURE"}, auth=("admin", PASSWORD), timeout=10
    )

    listed = {task_id.split(":", 1)[1] for task_id in answer.json()}
    assert failed <= listed
    assert not done & listed
