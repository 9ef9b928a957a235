"""Redis restarts under load: the same `jobgate worker` process carries on.

A Redis restart while jobs were running (their messages unacknowledged: acks
are late) used to kill the worker's main process within a second:
``Unrecoverable error: AttributeError("'NoneType' object has no attribute
'hostname'")``, a kombu/Celery 5.7 bug that workers/broker_patch.py fixes
(README, Guarantees). Here: a redis-server with ``appendfsync always``, the
worker as the Procfile runs it (concurrency 4), the sweep, submits throughout,
and four restarts with jobs running, two graceful and two SIGKILLs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import create_app
from jobgate.redis_server import RedisServer
from tests.integration.conftest import make_test_settings
from tests.support.harness import Process, start_beat, start_jobgate_worker, wait_until
from tests.support.load import Submitter, all_ended, any_running, unfinished, verdict
from workers.config import Settings
from workers.keys import JobKeys
from workers.store import JobStore

pytestmark = [pytest.mark.integration, pytest.mark.faults]

RESTARTS = ("SIGTERM", "SIGKILL", "SIGTERM", "SIGKILL")


@pytest.fixture(scope="module")
def aof_redis() -> Iterator[RedisServer]:
    with RedisServer(None, "--appendonly", "yes", "--appendfsync", "always") as server:
        yield server


@pytest.fixture(scope="module")
def rsettings(aof_redis: RedisServer) -> Settings:
    return make_test_settings(
        aof_redis.url,
        queue=f"restarts-{uuid.uuid4().hex[:6]}",
        lease_ttl=1.5,
        sweep_interval=0.5,
        redis_timeout=0.5,
        worker_concurrency=4,
        tenant_max_active=5000,
    )


@pytest.fixture(scope="module")
def rstore(rsettings: Settings) -> JobStore:
    return JobStore.from_settings(rsettings)


@pytest.fixture(scope="module")
def sweeping(rsettings: Settings, rstore: JobStore, log_dir: Path) -> Iterator[None]:
    beat = start_beat(rsettings, log_dir, "restarts-beat")
    sweeper = start_jobgate_worker(rsettings, rstore, log_dir, "restarts-sweep", sweep_only=True)
    yield
    sweeper.stop()
    beat.stop()


@pytest.fixture
def worker(rsettings: Settings, rstore: JobStore, log_dir: Path) -> Iterator[Process]:
    process = start_jobgate_worker(rsettings, rstore, log_dir, f"restarts-{uuid.uuid4().hex[:4]}")
    yield process
    process.stop()


def test_the_same_worker_survives_redis_restarts_under_load_and_every_job_ends_done(
    aof_redis: RedisServer,
    rsettings: Settings,
    rstore: JobStore,
    sweeping: None,
    worker: Process,
) -> None:
    pid = worker.popen.pid
    load = Submitter(create_app(rsettings), rate=8, n=5, delay=0.05)  # 0.25 s jobs
    load.start()
    recoveries = []
    try:
        for how in RESTARTS:
            # Jobs running, so messages are unacknowledged when Redis goes.
            wait_until(lambda: any_running(rstore, load.jobs[-20:]), 60, "jobs running")
            if how == "SIGKILL":
                aof_redis.kill()
            else:
                aof_redis.stop()
            aof_redis.start()
            back_at, mark = time.monotonic(), len(load.jobs)

            # The worker consumes again: a job submitted after the restart ends.
            def submitted(m: int = mark) -> bool:
                return len(load.jobs) > m

            wait_until(submitted, 60, "a submit after the restart")
            after = load.jobs[mark]

            def consumed(job: JobKeys = after) -> bool:
                if not worker.alive():
                    raise AssertionError(f"the worker died:\n{worker.output()[-4000:]}")
                return all_ended(rstore, [job])

            wait_until(consumed, 60, "a job submitted after the restart to end")
            recoveries.append(time.monotonic() - back_at)
            assert worker.alive() and worker.popen.pid == pid, worker.output()[-4000:]
    finally:
        load.stop()

    jobs = load.jobs
    try:
        wait_until(lambda: all_ended(rstore, jobs), 180, "every job to end", step=0.5)
    except AssertionError:
        stuck = unfinished(rstore, jobs)
        raise AssertionError(f"{len(stuck)} of {len(jobs)} unfinished: {stuck[:5]}") from None
    result = verdict(rstore, jobs)
    output = worker.output()

    assert worker.alive() and worker.popen.pid == pid
    assert "Unrecoverable error" not in output
    assert output.count("Connection to broker lost") >= len(RESTARTS)
    assert set(load.refused) <= {503}, load.refused
    assert (result.missing, result.not_terminal, result.failed) == ([], [], [])
    assert result.duplicates == []
    print(
        f"\n[faults] {len(RESTARTS)} Redis restarts under load: jobs={len(jobs)}, "
        f"refused_503={sum(load.refused.values())}, "
        f"new_job_done_s={[round(r, 2) for r in recoveries]}, "
        f"attempts={dict(result.attempts)}"
    )
