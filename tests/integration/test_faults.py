"""Fault injection: kill workers, restart them, stop Redis, redeliver messages.

Everything is real: a redis-server of this module's own (append-only file, so
a restart keeps every key, as a production Redis would), `celery worker`
processes, and `jobgate beat` running the sweep. Leases and clocks are short
(lease 1.5 s, sweep every 0.5 s) so that recovery takes seconds.

Each test prints what it measured (recovery times, jobs lost, duplicates);
``pytest -s -m faults`` shows the figures.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from jobgate.redis_server import RedisServer
from tests.integration.conftest import make_test_settings
from tests.support.harness import Process, children, start_beat, start_worker, wait_until
from workers.celery_app import make_celery, send_job
from workers.config import Settings
from workers.keys import PREFIX, JobKeys
from workers.states import Status
from workers.store import JobRecord, JobStore

pytestmark = [pytest.mark.integration, pytest.mark.faults]

TENANT = "default"  # auth is off in this module
RECOVERY_LIMIT = 60  # the contract: a lost worker's job moves on within 60 s


@pytest.fixture(scope="module")
def fault_redis() -> Iterator[RedisServer]:
    # fsync on every write: stopping and starting it again loses nothing.
    with RedisServer(None, "--appendonly", "yes", "--appendfsync", "always") as server:
        yield server


@pytest.fixture(scope="module")
def fsettings(fault_redis: RedisServer) -> Settings:
    return make_test_settings(
        fault_redis.url,
        queue=f"faults-{uuid.uuid4().hex[:6]}",
        lease_ttl=1.5,
        sweep_interval=0.5,
        shutdown_grace=1.0,
        redis_timeout=0.5,
        tenant_max_active=5000,  # 1,000 jobs queued at once by one tenant
    )


@pytest.fixture(scope="module")
def fstore(fsettings: Settings) -> JobStore:
    return JobStore.from_settings(fsettings)


@pytest.fixture(scope="module")
def fapp(fsettings: Settings) -> Flask:
    return create_app(fsettings)


@pytest.fixture
def fclient(fapp: Flask) -> FlaskClient:
    return fapp.test_client()


@pytest.fixture(scope="module")
def beat(fsettings: Settings, log_dir: Path) -> Iterator[Process]:
    process = start_beat(fsettings, log_dir, "faults-beat")
    yield process
    process.stop()


class Workers:
    """Worker processes started by one test, all stopped at its end."""

    def __init__(self, settings: Settings, store: JobStore, log_dir: Path) -> None:
        self.settings, self.store, self.log_dir = settings, store, log_dir
        self.started: list[Process] = []

    def start(self, name: str, *, sweep_only: bool = False, **overrides: Any) -> Process:
        settings = self.settings.with_overrides(**overrides)
        unique = f"{name}-{uuid.uuid4().hex[:6]}"
        process = start_worker(settings, self.store, self.log_dir, unique, sweep_only=sweep_only)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()


@pytest.fixture
def workers(
    fsettings: Settings, fstore: JobStore, log_dir: Path, beat: Process
) -> Iterator[Workers]:
    pool = Workers(fsettings, fstore, log_dir)
    yield pool
    pool.stop_all()


def submit(
    client: FlaskClient,
    job_type: str = "demo.count",
    retention: int = 1,
    priority: int | None = None,
    **params: Any,
) -> JobKeys:
    body = {
        "type": job_type,
        "params": params,
        "wait": 0,
        "poll_timeout": 0,
        "retention": retention,
    }
    if priority is not None:
        body["priority"] = priority
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.get_json()
    return JobKeys(TENANT, response.get_json()["id"])


def record(store: JobStore, keys: JobKeys) -> JobRecord:
    return store.read(keys, poll=False)


def wait_status(store: JobStore, keys: JobKeys, *statuses: Status, timeout: float) -> JobRecord:
    def reached() -> JobRecord | None:
        current = record(store, keys)
        return current if current.status in statuses else None

    found: JobRecord = wait_until(reached, timeout, f"job {keys.job_id} to be {statuses}")
    return found


def wait_running(store: JobStore, keys: JobKeys, progress: int = 1) -> JobRecord:
    def running() -> JobRecord | None:
        current = record(store, keys)
        ok = current.status is Status.RUNNING and current.progress >= progress
        return current if ok else None

    found: JobRecord = wait_until(running, 30, f"job {keys.job_id} to run")
    return found


def pool_pid(current: JobRecord) -> int:
    """The pool process running the job: its record names it (node:pid)."""
    return int(current.runs[-1].worker.rsplit(":", 1)[1])


def kill_worker(worker: Process) -> None:
    """SIGKILL a whole worker: its main process and every pool process."""
    pids = [worker.popen.pid, *children(worker.popen.pid)]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    worker.popen.wait()


def assert_one_execution_at_a_time(current: JobRecord) -> None:
    runs = current.runs
    assert [r.attempt for r in runs] == list(range(1, len(runs) + 1))
    for earlier, later in itertools.pairwise(runs):
        assert earlier.ended_ms is not None and earlier.ended_ms <= later.started_ms, runs


def delete_all(client: FlaskClient, jobs: list[JobKeys]) -> None:
    """DELETE finished jobs: only their short-lived tombstones remain."""
    for job in jobs:
        assert client.delete(f"/v1/jobs/{job.job_id}").status_code == 204


def report(what: str, **figures: Any) -> None:
    shown = ", ".join(
        f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
    )
    print(f"\n[faults] {what}: {shown}")


# -- 1. a worker killed mid-job --------------------------------------------------


def test_a_job_whose_worker_is_killed_ends_done_as_attempt_2_on_another_worker(
    workers: Workers, fclient: FlaskClient, fstore: JobStore
) -> None:
    first = workers.start("kill-a", worker_concurrency=1)
    # 10 s: it still runs when the second worker is up, however slowly it starts.
    job = submit(fclient, n=200, delay=0.05)
    wait_running(fstore, job, progress=10)
    second = workers.start("kill-b", worker_concurrency=1)

    killed_at = time.monotonic()
    kill_worker(first)
    done = wait_status(fstore, job, Status.DONE, Status.FAILED, timeout=RECOVERY_LIMIT)
    recovery = time.monotonic() - killed_at

    assert done.status is Status.DONE
    assert done.attempt == 2
    assert [r.outcome for r in done.runs] == ["lost", "DONE"]
    assert done.runs[0].worker.startswith(first.name)
    assert done.runs[1].worker.startswith(second.name)
    assert_one_execution_at_a_time(done)
    assert recovery < RECOVERY_LIMIT
    assert 'jobgate_jobs_requeued_total{reason="lost"}' in fclient.get("/metrics").text
    report("worker SIGKILLed mid-job", recovery_s=recovery, attempts=done.attempt)


def test_a_job_whose_pool_process_is_killed_runs_again(
    workers: Workers, fclient: FlaskClient, fstore: JobStore
) -> None:
    workers.start("oom", worker_concurrency=1)
    job = submit(fclient, n=40, delay=0.05)
    running = wait_running(fstore, job, progress=10)

    killed_at = time.monotonic()
    os.kill(pool_pid(running), signal.SIGKILL)  # what the OOM killer does
    done = wait_status(fstore, job, Status.DONE, Status.FAILED, timeout=RECOVERY_LIMIT)

    assert (done.status, done.attempt) == (Status.DONE, 2)
    assert [r.outcome for r in done.runs] == ["lost", "DONE"]
    assert_one_execution_at_a_time(done)
    report("pool process SIGKILLed mid-job", recovery_s=time.monotonic() - killed_at)


def test_a_job_out_of_attempts_ends_failed_worker_lost(
    workers: Workers, fclient: FlaskClient, fstore: JobStore
) -> None:
    workers.start("fragile", worker_concurrency=1)
    job = submit(fclient, "test.fragile", steps=100, delay=0.05)  # max_attempts=1
    running = wait_running(fstore, job, progress=5)

    os.kill(pool_pid(running), signal.SIGKILL)
    failed = wait_status(fstore, job, Status.DONE, Status.FAILED, timeout=RECOVERY_LIMIT)

    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert (failed.error["code"], failed.error["retryable"]) == ("WORKER_LOST", True)
    assert [r.outcome for r in failed.runs] == ["lost"]


# -- 4. the same message delivered again ------------------------------------------


def test_a_redelivered_message_while_the_lease_lives_runs_the_job_once(
    workers: Workers, fclient: FlaskClient, fstore: JobStore, fsettings: Settings
) -> None:
    worker = workers.start("redeliver", worker_concurrency=2)
    job = submit(fclient, retention=10, n=30, delay=0.05)
    wait_running(fstore, job, progress=5)
    celery = make_celery(fsettings)

    # What a visibility-timeout redelivery does: the same message, again,
    # to a free worker process while the first still runs the job.
    send_job(celery, fsettings, job, "demo.count")
    send_job(celery, fsettings, job, "demo.count")
    done = wait_status(fstore, job, Status.DONE, timeout=30)
    send_job(celery, fsettings, job, "demo.count")  # and once more after the end
    wait_until(lambda: f"job {job.job_id} not run: it is DONE" in worker.output(), 10, "the skip")

    final = record(fstore, job)
    assert final.attempt == done.attempt == 1
    assert [r.outcome for r in final.runs] == ["DONE"]
    assert final.status is Status.DONE


# -- 3. time limits ---------------------------------------------------------------


def test_a_job_past_its_time_limit_fails_and_the_worker_runs_the_next(
    workers: Workers, fclient: FlaskClient, fstore: JobStore
) -> None:
    workers.start("limit", worker_concurrency=1)
    slow = submit(fclient, "test.slow", seconds=30)  # max_runtime=2
    after = submit(fclient, n=3)

    failed = wait_status(fstore, slow, Status.FAILED, Status.DONE, timeout=20)
    assert failed.error is not None and failed.error["code"] == "TIME_LIMIT_EXCEEDED"
    assert wait_status(fstore, after, Status.DONE, timeout=20).attempt == 1


# -- graceful shutdown --------------------------------------------------------------


def test_sigterm_lets_a_short_job_finish(
    workers: Workers, fclient: FlaskClient, fstore: JobStore
) -> None:
    worker = workers.start("term-short", worker_concurrency=1, shutdown_grace=10.0)
    job = submit(fclient, retention=10, n=10, delay=0.1)
    wait_running(fstore, job)

    assert worker.stop(timeout=20) == 0

    done = record(fstore, job)
    assert (done.status, done.attempt) == (Status.DONE, 1)


def test_sigterm_hands_a_long_job_back_after_the_grace_period(
    workers: Workers, fclient: FlaskClient, fstore: JobStore
) -> None:
    worker = workers.start("term-long", worker_concurrency=1, shutdown_grace=1.0)
    job = submit(fclient, n=400, delay=0.05)  # 20 s
    wait_running(fstore, job, progress=2)

    stopping = time.monotonic()
    assert worker.stop(timeout=20) == 0
    shutdown = time.monotonic() - stopping
    handed = record(fstore, job)
    assert handed.status is Status.INITIALIZED
    assert [r.outcome for r in handed.runs] == ["handed_back"]

    workers.start("term-next", worker_concurrency=1)
    resumed = wait_running(fstore, job)
    assert resumed.attempt == 2
    assert_one_execution_at_a_time(resumed)
    fclient.delete(f"/v1/jobs/{job.job_id}")  # no need to wait 20 s
    report("SIGTERM during a long job", shutdown_s=shutdown)


# -- the sweep -----------------------------------------------------------------------


def test_the_sweep_times_out_a_job_nobody_reads(
    workers: Workers, fclient: FlaskClient, fstore: JobStore
) -> None:
    workers.start("sweeper", sweep_only=True, worker_concurrency=1)  # runs no job
    body = {"type": "demo.count", "params": {"n": 1}, "wait": 0, "poll_timeout": 1, "retention": 1}
    job = JobKeys(TENANT, fclient.post("/v1/jobs", json=body).get_json()["id"])

    # No worker runs and nobody reads the job (a read would settle it too):
    # only the sweep can have changed the record.
    wait_until(lambda: fstore.redis.hget(job.record, "status") == "FAILED", 10, "the sweep")
    assert '"TIMED_OUT"' in str(fstore.redis.hget(job.record, "error"))


# -- lost prefetched messages -----------------------------------------------------


def test_a_job_whose_message_vanished_is_sent_again(
    workers: Workers, fstore: JobStore, fault_redis: RedisServer
) -> None:
    workers.start("finder", worker_concurrency=1)
    job = JobKeys(TENANT, f"vanished-{uuid.uuid4().hex[:8]}")
    # Created, but its message never reached the broker, or a worker popped it
    # and stopped before reading it, or holds it unstarted and is dead: nothing
    # anywhere says so but the wait.
    fstore.create(job, "demo.count", '{"n":2}', poll_timeout=0, retention=1, max_runtime=60)
    raw = redis.Redis.from_url(fault_redis.url)
    now_s = int(raw.time()[0])
    raw.hset(job.record, "sent", (now_s - 30) * 1000)

    done = wait_status(fstore, job, Status.DONE, timeout=30)

    assert done.attempt == 1


# -- 2. Redis goes away for 10 s ------------------------------------------------------


def test_a_redis_outage_loses_no_job_and_the_same_workers_resume(
    workers: Workers,
    fclient: FlaskClient,
    fstore: JobStore,
    fault_redis: RedisServer,
    beat: Process,
) -> None:
    worker = workers.start("outage", worker_concurrency=2)
    # Retained long enough to be checked after the outage, deleted then.
    before = [submit(fclient, retention=600, n=10, delay=0.05) for _ in range(50)]
    wait_until(lambda: record(fstore, before[0]).status is not Status.INITIALIZED, 30, "a start")
    fault_redis.stop()
    down_at = time.monotonic()
    refused, slowest = 0, 0.0
    while time.monotonic() - down_at < 10:
        asked = time.monotonic()
        body = {"type": "demo.count", "params": {"n": 1}, "wait": 0, "retention": 1}
        response = fclient.post("/v1/jobs", json=body)
        slowest = max(slowest, time.monotonic() - asked)
        assert response.status_code == 503, response.get_json()
        assert response.get_json()["code"] == "BACKEND_UNAVAILABLE"
        assert int(response.headers["Retry-After"]) > 0
        assert fclient.get("/readyz").status_code == 503
        refused += 1
        time.sleep(0.5)
    fault_redis.start()
    up_at = time.monotonic()

    finals = [wait_status(fstore, job, Status.DONE, Status.FAILED, timeout=90) for job in before]
    drained = time.monotonic() - up_at
    delete_all(fclient, before)
    after = [submit(fclient, n=2) for _ in range(5)]
    for job in after:
        wait_status(fstore, job, Status.DONE, timeout=60)
    assert worker.alive()  # the same process throughout: never restarted

    assert [f.status for f in finals] == [Status.DONE] * 50
    for final in finals:
        assert_one_execution_at_a_time(final)
    retried = sum(1 for f in finals if f.attempt > 1)
    report(
        "Redis down 10 s under 50 jobs",
        refused_503=refused,
        slowest_503_s=slowest,
        all_done_s_after_recovery=drained,
        requeued=retried,
        lost=50 - len(finals),
    )


# -- 5. a thousand jobs through two worker restarts ------------------------------------


def test_a_thousand_jobs_survive_two_worker_restarts(
    workers: Workers, fclient: FlaskClient, fstore: JobStore
) -> None:
    worker = workers.start("many-1", worker_concurrency=4)
    jobs = [submit(fclient, retention=600, n=1) for _ in range(1000)]

    def finished() -> int:
        pipe = fstore.redis.pipeline(transaction=False)
        for job in jobs:
            pipe.hget(job.record, "status")
        return sum(1 for status in pipe.execute() if status in ("DONE", "FAILED"))

    wait_until(lambda: finished() >= 300, 120, "300 jobs to finish")
    worker.stop()  # a graceful restart (SIGTERM)
    worker = workers.start("many-2", worker_concurrency=4)
    wait_until(lambda: finished() >= 600, 120, "600 jobs to finish")
    kill_worker(worker)  # a hard one (SIGKILL)
    workers.start("many-3", worker_concurrency=4)
    try:
        wait_until(lambda: finished() == 1000, 90, "all 1,000 jobs to finish")
    except AssertionError:
        stuck = [r for r in (record(fstore, job) for job in jobs) if r.status is not Status.DONE]
        raise AssertionError(f"{len(stuck)} unfinished: {stuck[:3]}") from None

    finals = [record(fstore, job) for job in jobs]
    statuses = {f.status for f in finals}
    duplicates = [f for f in finals if len([r for r in f.runs if r.outcome == "DONE"]) != 1]
    delete_all(fclient, jobs)
    assert statuses == {Status.DONE}
    assert duplicates == []
    for final in finals:
        assert_one_execution_at_a_time(final)
    report(
        "1,000 jobs, 2 worker restarts",
        done=sum(f.status is Status.DONE for f in finals),
        lost=0,
        duplicates=len(duplicates),
        rerun_after_kill=sum(f.attempt > 1 for f in finals),
    )


# -- the queue: exact lost messages, resends first, hand-backs, sweep capacity ---------


def stats(store: JobStore) -> dict[str, int]:
    counters: dict[str, int] = store.metrics_snapshot()["stats"]
    return counters


def test_a_backlog_through_pool_and_worker_kills_sends_each_job_few_messages(
    workers: Workers, fclient: FlaskClient, fstore: JobStore
) -> None:
    before = stats(fstore)
    worker = workers.start("backlog-1", worker_concurrency=4)
    jobs = [submit(fclient, retention=600, n=1, delay=0.02) for _ in range(1200)]

    def finished() -> int:
        pipe = fstore.redis.pipeline(transaction=False)
        for job in jobs:
            pipe.hget(job.record, "status")
        return sum(1 for status in pipe.execute() if status in ("DONE", "FAILED"))

    wait_until(lambda: finished() >= 200, 120, "200 jobs to finish")
    os.kill(children(worker.popen.pid)[0], signal.SIGKILL)  # one pool process
    wait_until(lambda: finished() >= 500, 120, "500 jobs to finish")
    kill_worker(worker)  # the whole worker: what it held stays in kombu's unacked hash
    workers.start("backlog-2", worker_concurrency=4)
    wait_until(lambda: finished() == len(jobs), 120, "every job to finish")

    finals = [record(fstore, job) for job in jobs]
    pipe = fstore.redis.pipeline(transaction=False)
    for job in jobs:
        pipe.hget(job.record, "msgs")
    messages = [int(n) for n in pipe.execute()]
    after = stats(fstore)
    resent_lost = after.get("resent:lost", 0) - before.get("resent:lost", 0)
    resent = sum(after.get(k, 0) - before.get(k, 0) for k in after if k.startswith("resent:"))
    duplicates = [f for f in finals if len([r for r in f.runs if r.outcome == "DONE"]) != 1]
    delete_all(fclient, jobs)
    assert {f.status for f in finals} == {Status.DONE}
    assert duplicates == []
    for final in finals:
        assert_one_execution_at_a_time(final)
    # One message per job, plus one per requeued execution; a message is found
    # lost only if the killed worker held it unstarted (at most its 4 processes).
    assert max(messages) <= 3
    assert resent_lost <= 4
    assert sum(messages) - len(jobs) <= 4 + 2 * sum(f.attempt > 1 for f in finals)
    assert resent == sum(messages) - len(jobs)  # each resend counted, none sent twice
    broker = fstore.broker
    assert broker is not None
    wait_until(
        lambda: sum(broker.waiting().values()) == 0, 30, "no stale message left in the queue"
    )
    # No cascade: the first message of every job sent again without being
    # requeued had left the queue when the sweep judged it lost. Either the
    # killed worker still holds it (kombu's unacked hash), or it is gone: a
    # pool process killed while holding it is noticed by billiard only after
    # seconds, and Celery may give the message back after the sweep's
    # 10 s + grace judgement; it is then delivered, finds its job started or
    # done, and runs nothing (bounded above: at most 4 such resends).
    resent_unrequeued = [
        job
        for job, sent, final in zip(jobs, messages, finals, strict=True)
        if sent > 1 and final.attempt == 1
    ]
    held = broker.find([job.message_id(1) for job in resent_unrequeued])
    assert all(place.startswith("unacked:") or place == "" for place in held.values()), held
    report(
        "1,200-job backlog, a pool process and a whole worker SIGKILLed",
        done=len(finals),
        lost=0,
        duplicates=len(duplicates),
        messages=sum(messages),
        most_messages_for_one_job=max(messages),
        resent_lost=resent_lost,
        resent=resent,
    )


def test_a_requeued_job_runs_before_a_lower_priority_backlog_submitted_after_it(
    workers: Workers, fclient: FlaskClient, fstore: JobStore
) -> None:
    workers.start("first-sweeper", sweep_only=True, worker_concurrency=1)
    first = workers.start("first", worker_concurrency=1)
    # A resend keeps its job's priority (workers/broker.py): one above the
    # backlog's is what puts it first.
    early = submit(fclient, retention=60, priority=5, n=60, delay=0.05)
    wait_running(fstore, early, progress=5)
    later = [submit(fclient, retention=60, priority=4, n=10, delay=0.1) for _ in range(8)]

    # The whole worker dies: the job's first message stays in kombu's unacked
    # hash, so only the sweep's resend (after the lease lapses) brings it back.
    kill_worker(first)
    workers.start("second", worker_concurrency=1)
    done = wait_status(fstore, early, Status.DONE, timeout=RECOVERY_LIMIT + 20)
    for job in later:
        wait_status(fstore, job, Status.DONE, timeout=60)

    rerun = done.runs[-1].started_ms
    started_before = [job for job in later if record(fstore, job).runs[0].started_ms < rerun]
    delete_all(fclient, [early, *later])
    assert [r.outcome for r in done.runs] == ["lost", "DONE"]
    # Requeued ~lease TTL after the kill, it waits at most for what already
    # runs and what started meanwhile, not for the 8 s backlog behind it.
    assert len(started_before) <= 4, len(started_before)
    assert 'jobgate_messages_resent_total{reason="requeued"}' in fclient.get("/metrics").text
    report("requeued job vs. a backlog of 8", later_jobs_run_first=len(started_before))


def test_a_job_handed_back_three_times_then_lost_still_ends_done(
    workers: Workers, fclient: FlaskClient, fstore: JobStore
) -> None:
    job = submit(fclient, retention=60, n=100, delay=0.05)  # demo.count: max_attempts 3
    for deploy in range(3):  # three rolling deploys during the one job
        worker = workers.start(f"deploy-{deploy}", worker_concurrency=1, shutdown_grace=1.0)
        wait_running(fstore, job)
        assert worker.stop(timeout=20) == 0
        assert record(fstore, job).status is Status.INITIALIZED
    workers.start("deploy-3", worker_concurrency=1)
    running = wait_running(fstore, job, progress=5)
    os.kill(pool_pid(running), signal.SIGKILL)  # then its worker is lost: one attempt spent

    done = wait_status(fstore, job, Status.DONE, Status.FAILED, timeout=RECOVERY_LIMIT + 20)

    delete_all(fclient, [job])
    assert done.status is Status.DONE, done.error
    assert [r.outcome for r in done.runs] == ["handed_back"] * 3 + ["lost", "DONE"]
    assert_one_execution_at_a_time(done)


def test_the_sweep_settles_jobs_while_every_job_process_is_busy(
    workers: Workers, fclient: FlaskClient, fstore: JobStore
) -> None:
    workers.start("busy", worker_concurrency=1)
    workers.start("sweep-only", sweep_only=True, worker_concurrency=1)  # the Procfile's sweeper
    long = submit(fclient, n=400, delay=0.05)  # 20 s
    wait_running(fstore, long)
    body = {"type": "demo.count", "params": {"n": 1}, "wait": 0, "poll_timeout": 1, "retention": 1}
    unread = JobKeys(TENANT, fclient.post("/v1/jobs", json=body).get_json()["id"])

    # Nobody reads it (a read would settle it): only the sweep can time it out.
    wait_until(lambda: fstore.redis.hget(unread.record, "status") == "FAILED", 15, "the sweep")
    assert fstore.redis.hget(long.record, "status") == "RUNNING"  # busy all along
    assert '"TIMED_OUT"' in str(fstore.redis.hget(unread.record, "error"))
    fclient.delete(f"/v1/jobs/{long.job_id}")


def test_a_queued_job_without_heartbeat_lives_on_until_a_worker_runs_it(
    workers: Workers, fstore: JobStore, fsettings: Settings
) -> None:
    workers.start("renewer", sweep_only=True, worker_concurrency=1)  # no job worker
    job = JobKeys(TENANT, f"patient-{uuid.uuid4().hex[:8]}")
    # Its keys live max runtime + retention = 3 s unless renewed.
    fstore.create(job, "demo.count", '{"n":2}', poll_timeout=0, retention=1, max_runtime=2)
    send_job(make_celery(fsettings), fsettings, job, "demo.count")
    waited = time.monotonic()
    while time.monotonic() - waited < 10:  # three times as long
        assert fstore.redis.exists(job.record, job.tombstone) == 2
        time.sleep(0.2)

    workers.start("arrives", worker_concurrency=1)

    done = wait_status(fstore, job, Status.DONE, timeout=30)
    assert done.attempt == 1


# -- 6. hygiene --------------------------------------------------------------------------


def test_zz_after_the_faults_no_key_lives_forever_and_job_keys_expire(
    fault_redis: RedisServer, fsettings: Settings, beat: Process
) -> None:
    raw = redis.Redis.from_url(fault_redis.url, decode_responses=True)
    keys = list(raw.scan_iter(match=f"{PREFIX}*"))
    assert keys
    assert [k for k in keys if raw.ttl(k) == -1] == []

    def job_keys() -> list[str]:
        return list(raw.scan_iter(match=f"{PREFIX}job:*"))

    # retention 1 s + the tombstone's 3 s, and the longest job above
    try:
        wait_until(lambda: job_keys() == [], 30, "every job key to expire")
    except AssertionError:
        left = {key: (raw.ttl(key), raw.type(key)) for key in job_keys()[:5]}
        raise AssertionError(f"job keys left (ttl, type): {left}") from None
    for key in raw.scan_iter(match=f"{PREFIX}*"):
        assert raw.ttl(key) > 0, key
