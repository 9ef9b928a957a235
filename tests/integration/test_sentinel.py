"""JOBGATE_REDIS_MODE=sentinel: the primary dies under load, the sentinels
promote its replica, and Jobgate goes on without losing an accepted job.

A primary, one replica and three sentinels (quorum 2, down-after 1 s), job
state and the broker both on them (kombu's ``sentinel://`` transport), the
worker and the sweep as deployed, the API in this process. Submits with
JOBGATE_REDIS_WAIT_REPLICAS=1 (an accepted job is on the replica), reads and
the worker's drain run throughout; the primary is SIGKILLed. Until the
sentinels have promoted the replica and a replica is back for WAIT (the killed
server restarted, as its supervisor would: sentinel makes it a replica of the
new primary), the API answers 503 with the contract's problem+json, and
nothing else; then every submit is accepted again, and every job that was
accepted ends DONE, run once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from flask import Flask
from werkzeug.test import TestResponse

from app import create_app
from jobgate.redis_server import RedisServer
from tests.integration.conftest import make_test_settings
from tests.support.harness import Process, start_beat, start_jobgate_worker, wait_until
from tests.support.load import TENANT, all_ended, verdict
from tests.support.topologies import FAST_SYNC, MASTER_NAME, SentinelSet
from workers.celery_app import celery_broker_url, celery_config
from workers.config import Settings
from workers.keys import JobKeys
from workers.store import JobStore

pytestmark = [pytest.mark.integration, pytest.mark.faults]

DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


@pytest.fixture
def sentinel_set() -> Iterator[SentinelSet]:
    with SentinelSet(DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS) as topology:
        yield topology


def sentinel_settings(sentinel_set: SentinelSet, wait_replicas: int) -> Settings:
    return make_test_settings(
        # Only the database is read from the URL: the sentinels name the host.
        "redis://unused:1/0",
        redis_mode="sentinel",
        redis_sentinels=sentinel_set.addresses,
        redis_sentinel_master=MASTER_NAME,
        redis_wait_replicas=wait_replicas,
        redis_wait_timeout=1.0,
        queue=f"sentinel-{uuid.uuid4().hex[:6]}",
        lease_ttl=1.5,
        sweep_interval=0.5,
        redis_timeout=0.5,
        worker_concurrency=4,
        tenant_max_active=5000,
    )


@contextmanager
def deployed(settings: Settings, store: JobStore, log_dir: Path) -> Iterator[None]:
    """The worker and the sweep as the Procfile runs them."""
    processes: list[Process] = []
    try:
        processes.append(start_jobgate_worker(settings, store, log_dir, "sentinel-worker"))
        processes.append(start_beat(settings, log_dir, "sentinel-beat"))
        yield
    finally:
        for process in processes:
            process.stop()


class Traffic(threading.Thread):
    """Submit a job and read the one before, over and over, noting every answer."""

    def __init__(self, app: Flask) -> None:
        super().__init__(name="traffic", daemon=True)
        self.client = app.test_client()
        self.accepted: list[JobKeys] = []
        # (monotonic time, method, status, problem code or '')
        self.answers: list[tuple[float, str, int, str]] = []
        self._halt = threading.Event()

    def _note(self, method: str, response: TestResponse) -> int:
        status = response.status_code
        code = ""
        if status >= 400:
            assert response.content_type == "application/problem+json"
            code = str(response.get_json()["code"])
        self.answers.append((time.monotonic(), method, status, code))
        return status

    def run(self) -> None:
        body = {"type": "demo.count", "params": {"n": 1}, "wait": 0, "poll_timeout": 0}
        while not self._halt.is_set():
            response = self.client.post("/v1/jobs", json=body)
            if self._note("POST", response) in (201, 202):
                self.accepted.append(JobKeys(TENANT, response.get_json()["id"]))
            if self.accepted:
                reply = self.client.get(f"/v1/jobs/{self.accepted[-1].job_id}")
                self._note("GET", reply)
            self._halt.wait(0.02)

    def accepted_after(self, moment: float) -> int:
        return sum(1 for t, m, s, _ in self.answers if t > moment and m == "POST" and s == 202)

    def stop(self) -> None:
        self._halt.set()
        self.join(60)


def test_the_kombu_url_goes_through_the_sentinels() -> None:
    settings = make_test_settings(
        "redis://:pw@unused:1/3",
        redis_mode="sentinel",
        redis_sentinels=("10.0.0.1:26379", "10.0.0.2:26380"),
        redis_sentinel_master="main",
    )
    assert celery_broker_url(settings) == (
        "sentinel://:pw@10.0.0.1:26379/3;sentinel://:pw@10.0.0.2:26380/3"
    )
    transport = celery_config(settings)["broker_transport_options"]
    assert transport["master_name"] == "main"
    # A broker of its own is left as it is.
    other = settings.with_overrides(broker_url="amqp://guest@127.0.0.1//")
    assert celery_broker_url(other) == "amqp://guest@127.0.0.1//"


@pytest.mark.parametrize("wait_replicas", [0, 1])
def test_primary_killed_under_load_503_for_the_failover_then_nothing_lost(
    sentinel_set: SentinelSet, log_dir: Path, wait_replicas: int
) -> None:
    settings = sentinel_settings(sentinel_set, wait_replicas)
    store = JobStore.from_settings(settings)
    old = sentinel_set.primary
    assert sentinel_set.primary_port() == old.port
    with deployed(settings, store, log_dir):
        traffic = Traffic(create_app(settings))
        traffic.start()
        try:
            wait_until(lambda: len(traffic.accepted) >= 40, 60, "40 accepted submits")

            killed_at = time.monotonic()
            old.kill()
            promoted: int = wait_until(
                lambda: (port := sentinel_set.primary_port()) != old.port and port,
                60,
                "the sentinels to promote the replica",
            )
            promoted_at = time.monotonic()
            # The killed server comes back empty, as its supervisor restarts
            # it, a replica of the new primary (what sentinel would make it).
            sentinel_set.primary = RedisServer(
                old.port, "--replicaof", "127.0.0.1", str(promoted), *FAST_SYNC
            ).start()
            old.close()
            new_primary = redis.Redis(port=promoted, decode_responses=True)
            wait_until(
                lambda: new_primary.info("replication").get("slave0", {}).get("state") == "online",
                60,
                "the restarted server to replicate the new primary",
            )
            replica_back_at = time.monotonic()
            wait_until(lambda: traffic.accepted_after(replica_back_at) >= 40, 90, "40 more submits")
        finally:
            traffic.stop()

        refused = [(t, m, s, c) for t, m, s, c in traffic.answers if s not in (200, 201, 202)]
        # Nothing but the contract's 503 while Redis fails over ...
        assert refused, "the primary's death went unnoticed: the test shows nothing"
        assert {(s, c) for _, _, s, c in refused} == {(503, "BACKEND_UNAVAILABLE")}
        # ... and only from the kill until the sentinels promoted the replica
        # (with WAIT: until a replica is back to acknowledge), with a margin for
        # the requests in flight and a loaded machine.
        first_refused, last_refused = refused[0][0], refused[-1][0]
        back_at = replica_back_at if wait_replicas else promoted_at
        print(
            f"\nWAIT {wait_replicas}: promoted {promoted_at - killed_at:.1f} s after the kill, "
            f"replica back {replica_back_at - killed_at:.1f} s, 503 from "
            f"{first_refused - killed_at:.1f} s to {last_refused - killed_at:.1f} s "
            f"({len(refused)} answers)"
        )
        assert first_refused >= killed_at
        assert last_refused <= back_at + 3.0, (
            f"503 until {last_refused - killed_at:.1f} s after the kill, "
            f"{last_refused - back_at:.1f} s after the failover"
        )

        # Every job accepted (202) before, during and after the failover ends,
        # run once: with WAIT, none was lost with the primary.
        wait_until(lambda: all_ended(store, traffic.accepted), 180, "every accepted job to end")
        result = verdict(store, traffic.accepted)
        print(f"accepted {len(traffic.accepted)}, lost {len(result.missing)}")
        assert not result.duplicates and not result.not_terminal, result
        if wait_replicas:
            assert not result.missing, result.missing
        assert not result.failed, result.failed
