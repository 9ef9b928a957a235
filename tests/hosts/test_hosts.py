"""Workers on several hosts: 1 API host, 1 Redis host, 3 worker hosts.

Each host is a network namespace (tests/hosts/netns.py); every process runs
in its host's with ``ip netns exec``, and reaches the others only through
the switch, by address. Redis (state and broker) is on its host, the API,
``jobgate beat`` and a sweep-only worker on theirs, one Celery worker on each
worker host. Short clocks: a lease of 3 s, a sweep every second.

1. Sleeping jobs (I/O-bound) drain about three times faster on three worker
   hosts than on one.
2. One worker host's link goes down while it runs jobs: they are requeued as
   their leases lapse and run to DONE on the other hosts, within lease TTL +
   sweep interval; when the link comes back, the stale executions find their
   leases taken and write nothing: each job ran to its end once.

Root and iproute2 are needed: ``make test-hosts`` (marker ``hosts``, left
out of ``make test``; run by ``.ci/run``).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.hosts.netns import Host, Network
from tests.integration.conftest import make_test_settings
from tests.support.harness import BIN, Process, start_worker, wait_until
from workers.config import Settings
from workers.errors import BackendUnavailable
from workers.keys import WORKERS, JobKeys
from workers.states import Status
from workers.store import JobRecord, JobStore

pytestmark = [pytest.mark.hosts]

WORKER_HOSTS = ("w1", "w2", "w3")
CONCURRENCY = 4  # job processes per worker host
DRAIN_JOBS = 36  # 9 rounds of 4 on one host, 3 on three
STEPS, STEP_S = 10, 0.15  # each drain job sleeps 1.5 s
LEASE_TTL, SWEEP_INTERVAL = 3.0, 1.0
# Slack for a loaded machine on top of lease TTL + sweep interval: process
# wake-ups, the resend's delivery, the start on the other host.
RECOVERY_SLACK = 6.0
TENANT = "default"


@dataclass
class Cluster:
    net: Network
    settings: Settings
    store: JobStore
    api: str
    log_dir: Path
    workers: dict[str, Process]

    def stop_workers(self) -> None:
        while self.workers:
            self.workers.popitem()[1].stop()

    def start_worker(self, role: str) -> Process:
        host = self.net.hosts[role]
        name = f"{role}-{uuid.uuid4().hex[:5]}"
        worker = start_worker(
            self.settings, self.store, self.log_dir, name, argv_prefix=host.exec_prefix()
        )
        self.workers[role] = worker
        return worker

    def submit(self, **params: Any) -> JobKeys:
        body: dict[str, Any] = {
            "type": "demo.count",
            "params": params,
            "wait": 0,
            "poll_timeout": 0,
        }
        response = requests.post(f"{self.api}/v1/jobs", json=body, timeout=30)
        assert response.status_code == 202, response.text
        return JobKeys(TENANT, response.json()["id"])

    def records(self, jobs: list[JobKeys]) -> list[JobRecord]:
        found = self.store.read_many(jobs, poll=False, inline_max=0)
        assert all(isinstance(r, JobRecord) for r in found), found
        return [r for r in found if isinstance(r, JobRecord)]


def in_host(host: Host, argv: list[str], settings: Settings, log: Path) -> Process:
    return Process([*host.exec_prefix(), *argv], settings, log)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.fail("network namespaces need root (make test-hosts as root)")
    log_dir = tmp_path_factory.mktemp("hosts")
    net = Network(["redis", "api", *WORKER_HOSTS]).open()
    started: list[Process] = []
    cluster = None
    try:
        redis_host, api_host = net.hosts["redis"], net.hosts["api"]
        settings = make_test_settings(
            f"redis://{redis_host.address}:6379/0",
            queue="hosts",
            lease_ttl=LEASE_TTL,
            sweep_interval=SWEEP_INTERVAL,
            watchdog_interval=0.5,
            shutdown_grace=1.0,
            worker_concurrency=CONCURRENCY,
            tenant_max_active=1000,
            bind_host=api_host.address,
            port=8000,
            web_workers=1,
            web_threads=16,
            auth="off",
        )
        redis_argv = [
            "redis-server", "--bind", redis_host.address, "--port", "6379",
            "--save", "", "--appendonly", "no", "--protected-mode", "no",
        ]  # fmt: skip
        started.append(in_host(redis_host, redis_argv, settings, log_dir / "redis.log"))
        store = JobStore.from_settings(settings)
        wait_until(lambda: _pings(store), 30, "Redis on its host to answer")
        api = f"http://{api_host.address}:8000"
        web = in_host(api_host, [str(BIN / "jobgate"), "web"], settings, log_dir / "web.log")
        started.append(web)
        wait_until(lambda: _answers(f"{api}/healthz", web), 60, "the API on its host")
        beat_argv = [str(BIN / "jobgate"), "beat"]
        started.append(in_host(api_host, beat_argv, settings, log_dir / "beat.log"))
        cluster = Cluster(net, settings, store, api, log_dir, {})
        # The sweep on the API host: it goes on whichever worker host is cut.
        started.append(
            start_worker(
                settings.with_overrides(worker_concurrency=1),
                store,
                log_dir,
                f"sweeper-{uuid.uuid4().hex[:5]}",
                sweep_only=True,
                argv_prefix=api_host.exec_prefix(),
            )
        )
        yield cluster
    finally:
        for process in [*(cluster.workers.values() if cluster else ()), *reversed(started)]:
            process.stop(timeout=30)
        net.close()


def _pings(store: JobStore) -> bool:
    try:
        return store.ping()
    except BackendUnavailable:
        return False


def _answers(url: str, process: Process) -> bool:
    if not process.alive():
        raise RuntimeError(f"the API died:\n{process.output()}")
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def drain(cluster: Cluster) -> float:
    """Seconds from the first submit of DRAIN_JOBS sleeping jobs to the last DONE."""
    started = time.monotonic()
    jobs = [cluster.submit(n=STEPS, delay=STEP_S) for _ in range(DRAIN_JOBS)]

    def all_done() -> bool:
        return all(r.status is Status.DONE for r in cluster.records(jobs))

    wait_until(all_done, 300, f"{DRAIN_JOBS} jobs to drain", step=0.1)
    return time.monotonic() - started


def test_three_worker_hosts_drain_sleeping_jobs_about_three_times_faster_than_one(
    cluster: Cluster,
) -> None:
    cluster.stop_workers()
    cluster.start_worker("w1")
    one = drain(cluster)
    cluster.start_worker("w2")
    cluster.start_worker("w3")
    three = drain(cluster)

    ideal = DRAIN_JOBS / CONCURRENCY * STEPS * STEP_S
    print(
        f"\n[hosts] drain of {DRAIN_JOBS} x {STEPS * STEP_S:g} s jobs, {CONCURRENCY} per host: "
        f"1 host {one:.1f} s (ideal {ideal:.1f}), 3 hosts {three:.1f} s "
        f"(ideal {ideal / 3:.1f}): {one / three:.2f}x (load {os.getloadavg()[0]:.1f})"
    )
    assert one / three >= 2.0, (one, three)


def test_a_cut_worker_hosts_jobs_finish_elsewhere_once(cluster: Cluster) -> None:
    cluster.stop_workers()
    w1 = cluster.start_worker("w1")
    # Only w1 runs: these jobs are all its (20 s each, 3 of its 4 processes).
    jobs = [cluster.submit(n=80, delay=0.25) for _ in range(3)]

    def running_on_w1() -> bool:
        return all(
            r.status is Status.RUNNING and r.progress >= 2 and r.runs[-1].worker.startswith(w1.name)
            for r in cluster.records(jobs)
        )

    wait_until(running_on_w1, 60, "w1 to run the jobs")
    others = [cluster.start_worker(role) for role in ("w2", "w3")]

    cut_at = time.monotonic()
    cluster.net.cut("w1")

    def moved() -> bool:
        return all(
            r.attempt == 2 and r.status is not Status.INITIALIZED for r in cluster.records(jobs)
        )

    wait_until(moved, 60, "the cut host's jobs to start elsewhere", step=0.1)
    recovery = time.monotonic() - cut_at

    def ended() -> list[JobRecord] | None:
        found = cluster.records(jobs)
        return found if all(r.status.terminal for r in found) else None

    finals: list[JobRecord] = wait_until(ended, 90, "the moved jobs to end")
    cluster.net.mend("w1")
    mended_at = time.time()

    print(
        f"\n[hosts] link of w1 cut mid-job: its {len(jobs)} jobs ran again elsewhere "
        f"{recovery:.1f} s later (lease {LEASE_TTL:g} s + sweep {SWEEP_INTERVAL:g} s)"
    )
    assert recovery <= LEASE_TTL + SWEEP_INTERVAL + RECOVERY_SLACK, recovery
    for final in finals:
        assert final.status is Status.DONE, final
        assert [r.outcome for r in final.runs] == ["lost", "DONE"]
        assert any(final.runs[1].worker.startswith(o.name) for o in others), final.runs

    # The link is back: w1 reaches Redis again (its heartbeat), and each of its
    # stale executions finds its lease taken and stops, writing nothing.
    def w1_back() -> bool:
        seen = cluster.store.redis.zscore(WORKERS, f"{w1.name}@{socket.gethostname()}")
        return seen is not None and float(seen) >= mended_at - 1

    wait_until(w1_back, 60, "w1's heartbeat after the link came back")

    def stale_stopped() -> bool:
        return all(f"job {job.job_id} ended" in w1.output() for job in jobs)

    wait_until(stale_stopped, 60, "w1's stale executions to stop")
    after = cluster.records(jobs)
    for before, now in zip(finals, after, strict=True):
        assert (now.status, now.attempt, now.runs) == (before.status, before.attempt, before.runs)
        assert now.finished_ms == before.finished_ms
