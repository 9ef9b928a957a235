"""Both brokers, the same guarantees: Redis (kombu's transport) and RabbitMQ.

Every test here runs once per broker (``broker`` fixture): job state on a
redis-server of this module's own, messages on that Redis or in a RabbitMQ
vhost made for the module and deleted after it (tests/support/rabbitmq.py).
Queues per job type, priorities (a high-priority job overtakes a backlog of
low ones), and what RabbitMQ does with the message of a killed worker.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from jobgate.redis_server import RedisServer
from tests.integration.conftest import make_test_settings
from tests.support.harness import BIN, Process, children, start_beat, start_worker, wait_until
from tests.support.rabbitmq import queue_arguments, rabbitmq_vhost
from workers.celery_app import make_celery
from workers.config import Settings
from workers.keys import JobKeys
from workers.queues import job_queue
from workers.states import Status
from workers.store import JobRecord, JobStore

pytestmark = [pytest.mark.integration]

TENANT = "default"  # auth is off


@pytest.fixture(scope="module")
def state_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def bsettings(request: pytest.FixtureRequest, state_redis: RedisServer) -> Iterator[Settings]:
    values: dict[str, Any] = {
        "queue": f"brokers-{uuid.uuid4().hex[:6]}",
        "lease_ttl": 1.5,
        "sweep_interval": 0.5,
        "shutdown_grace": 1.0,
    }
    if request.param == "redis":
        yield make_test_settings(state_redis.url, **values)
        return
    with rabbitmq_vhost() as url:
        yield make_test_settings(state_redis.url, broker_url=url, **values)


@pytest.fixture(scope="module")
def bstore(bsettings: Settings) -> JobStore:
    return JobStore.from_settings(bsettings)


@pytest.fixture(scope="module")
def bapp(bsettings: Settings) -> Flask:
    return create_app(bsettings)


@pytest.fixture
def bclient(bapp: Flask) -> FlaskClient:
    return bapp.test_client()


class Workers:
    def __init__(self, settings: Settings, store: JobStore, log_dir: Path) -> None:
        self.settings, self.store, self.log_dir = settings, store, log_dir
        self.started: list[Process] = []

    def start(self, name: str, queues: str = "", **overrides: Any) -> Process:
        settings = self.settings.with_overrides(**overrides)
        unique = f"{name}-{uuid.uuid4().hex[:6]}"
        process = start_worker(settings, self.store, self.log_dir, unique, queues=queues)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()


@pytest.fixture
def workers(bsettings: Settings, bstore: JobStore, log_dir: Path) -> Iterator[Workers]:
    pool = Workers(bsettings, bstore, log_dir)
    yield pool
    pool.stop_all()


@pytest.fixture
def beat(bsettings: Settings, log_dir: Path) -> Iterator[Process]:
    process = start_beat(bsettings, log_dir, f"brokers-beat-{uuid.uuid4().hex[:6]}")
    yield process
    process.stop()


def submit(client: FlaskClient, job_type: str, params: dict[str, Any], **extra: Any) -> JobKeys:
    body = {"type": job_type, "params": params, "wait": 0, "poll_timeout": 0, **extra}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.get_json()
    return JobKeys(TENANT, response.get_json()["id"])


def record(store: JobStore, keys: JobKeys) -> JobRecord:
    return store.read(keys, poll=False)


def wait_done(store: JobStore, keys: JobKeys, timeout: float = 60) -> JobRecord:
    def done() -> JobRecord | None:
        current = record(store, keys)
        return current if current.status.terminal else None

    found: JobRecord = wait_until(done, timeout, f"job {keys.job_id} to end")
    assert found.status is Status.DONE, found
    return found


def wait_running(store: JobStore, keys: JobKeys) -> JobRecord:
    def running() -> JobRecord | None:
        current = record(store, keys)
        return current if current.status is Status.RUNNING and current.progress >= 5 else None

    found: JobRecord = wait_until(running, 60, f"job {keys.job_id} to run")
    return found


def kill_worker(worker: Process) -> None:
    """SIGKILL a worker's main process and its pool: its broker connection dies."""
    for pid in [worker.popen.pid, *children(worker.popen.pid)]:
        os.kill(pid, signal.SIGKILL)
    worker.popen.wait()


# -- priorities -------------------------------------------------------------------


def test_a_high_priority_job_overtakes_a_backlog_of_low_ones(
    bclient: FlaskClient, bstore: JobStore, workers: Workers
) -> None:
    # No worker yet: the backlog waits on the broker, in submission order.
    low = [submit(bclient, "demo.count", {"n": 2, "delay": 0.05}, priority=0) for _ in range(6)]
    high = submit(bclient, "demo.count", {"n": 2, "delay": 0.05}, priority=9)

    # queue_position counts every more urgent job first, then the older ones.
    assert record(bstore, high).queue_position == 0
    assert [record(bstore, job).queue_position for job in low] == [1, 2, 3, 4, 5, 6]
    assert (record(bstore, high).priority, record(bstore, low[0]).priority) == (9, 0)

    workers.start("prio", worker_concurrency=1)
    finals = {job: wait_done(bstore, job) for job in [high, *low]}

    started = {job: final.runs[0].started_ms for job, final in finals.items()}
    assert started[high] < min(started[job] for job in low), started
    # And the backlog itself ran in submission order.
    assert [started[job] for job in low] == sorted(started[job] for job in low)


def test_a_submit_priority_outside_its_types_bounds_is_a_422(bclient: FlaskClient) -> None:
    body = {"type": "test.report", "params": {"seconds": 0}, "wait": 0, "priority": 7}
    response = bclient.post("/v1/jobs", json=body)

    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "priority" in response.get_data(as_text=True)
    body["priority"] = "9"  # not a JSON integer
    assert bclient.post("/v1/jobs", json=body).status_code == 422


# -- queues -----------------------------------------------------------------------


def test_a_worker_consumes_only_the_queues_it_is_given(
    bclient: FlaskClient, bstore: JobStore, bsettings: Settings, workers: Workers
) -> None:
    workers.start("default-only", queues="default", worker_concurrency=1)
    reported = submit(bclient, "test.report", {"seconds": 0.1})
    counted = submit(bclient, "demo.count", {"n": 1})

    wait_done(bstore, counted)
    waiting = record(bstore, reported)
    assert waiting.status is Status.INITIALIZED
    assert (waiting.queue, waiting.priority) == (job_queue(bsettings, "reports"), 2)
    assert waiting.queue_position == 0  # first in its own queue
    metrics = bclient.get("/metrics").get_data(as_text=True)
    assert f'jobgate_jobs_queued{{queue="{job_queue(bsettings, "reports")}"}} 1.0' in metrics

    workers.start("reports-only", queues="reports", worker_concurrency=1)
    done = wait_done(bstore, reported)
    assert "reports-only" in done.runs[0].worker


ON_RABBITMQ = pytest.mark.parametrize("bsettings", ["rabbitmq"], indirect=True)


@ON_RABBITMQ
def test_on_rabbitmq_job_queues_are_classic_with_ten_priorities(
    bclient: FlaskClient, bsettings: Settings, workers: Workers
) -> None:
    workers.start("declare", worker_concurrency=1)
    declared = queue_arguments(bsettings.broker_url)

    for name in (bsettings.queue, job_queue(bsettings, "reports")):
        assert "x-max-priority" in declared[name] and "9" in declared[name], declared


# -- a lost worker ------------------------------------------------------------------


def test_a_job_whose_worker_is_killed_runs_again_once_on_another(
    bclient: FlaskClient, bstore: JobStore, workers: Workers, beat: Process
) -> None:
    first = workers.start("kill-a", worker_concurrency=1)
    job = submit(bclient, "demo.count", {"n": 200, "delay": 0.05})
    wait_running(bstore, job)
    second = workers.start("kill-b", worker_concurrency=1)

    kill_worker(first)
    done = wait_done(bstore, job, timeout=60)

    assert done.attempt == 2
    assert [r.outcome for r in done.runs] == ["lost", "DONE"]
    assert done.runs[1].worker.startswith(second.name)
    first_run, second_run = done.runs
    assert first_run.ended_ms is not None and first_run.ended_ms <= second_run.started_ms


@ON_RABBITMQ
def test_on_rabbitmq_a_killed_workers_unstarted_message_comes_back_without_the_sweep(
    bclient: FlaskClient, bsettings: Settings, bstore: JobStore, workers: Workers, log_dir: Path
) -> None:
    """What Jobgate's lost-message search does on Redis (a message a dead worker
    held, kept by kombu for its visibility timeout) RabbitMQ does by itself: a
    delivery unacked when its connection closes goes back to the queue at once.
    No sweep runs here: only the broker can bring the message back."""
    # A worker that receives the message but cannot start the job: its
    # Redis is a port nobody answers on, so it retries start() holding it.
    dead_redis = "redis://127.0.0.1:1/0"
    stuck_settings = bsettings.with_overrides(redis_url=dead_redis, worker_concurrency=1)
    stuck = Process(
        [
            str(BIN / "celery"),
            "--app", "workers.worker", "worker", "--pool", "prefork", "--concurrency", "1",
            "--queues", bsettings.queue, "--hostname", f"stuck-{uuid.uuid4().hex[:6]}@%h",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle",
        ],
        stuck_settings,
        log_dir / f"stuck-{uuid.uuid4().hex[:6]}.log",
    )  # fmt: skip
    workers.started.append(stuck)
    wait_until(lambda: "ready." in stuck.output(), 60, "the stuck worker to be ready")
    job = submit(bclient, "demo.count", {"n": 1})
    wait_until(lambda: "received" in stuck.output(), 60, "the stuck worker to receive the job")
    assert record(bstore, job).status is Status.INITIALIZED

    kill_worker(stuck)
    healthy = workers.start("healthy", worker_concurrency=1)
    done = wait_done(bstore, job, timeout=60)

    assert done.attempt == 1  # its first and only execution
    assert done.runs[0].worker.startswith(healthy.name)
    assert make_celery(bsettings).conf.broker_transport_options == {"confirm_publish": True}
