"""Redis or RabbitMQ as the broker: what each costs a submit and a drain.

``python -m bench.brokers`` (not part of ``make bench``: it needs the
machine's RabbitMQ, in a vhost of its own, deleted afterwards). Job state is
always on a redis-server of the bench's own; the broker is that same Redis,
or RabbitMQ. Two figures per broker, on the same gunicorn and worker:

- ``201 round trip``: a submit with ``wait`` of a job that ends at once
  (``demo.count`` n=1), one client after another: the API creates the job,
  publishes its message, a worker takes it and runs it, the API's wait ends.
- ``drain``: JOBS such jobs queued with no worker running, then one worker
  (2 processes) started: seconds from its first start to the last DONE.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from jobgate.redis_server import RedisServer
from tests.integration.conftest import make_test_settings
from tests.support.harness import LiveServer, start_worker, wait_until
from tests.support.rabbitmq import rabbitmq_vhost
from workers.config import Settings
from workers.keys import JobKeys
from workers.states import Status
from workers.store import JobRecord, JobStore

TENANT = "default"


@contextmanager
def broker_url(kind: str, redis_url: str) -> Iterator[str]:
    if kind == "redis":
        yield redis_url
        return
    with rabbitmq_vhost("jobgate-bench") as url:
        yield url


def round_trips(api: str, count: int) -> list[float]:
    body: dict[str, Any] = {"type": "demo.count", "params": {"n": 1}, "wait": 10, "poll_timeout": 0}
    seconds = []
    with requests.Session() as session:
        for _ in range(count):
            started = time.perf_counter()
            response = session.post(f"{api}/v1/jobs", json=body, timeout=30)
            seconds.append(time.perf_counter() - started)
            assert response.status_code == 201, response.text
    return seconds


def drain(settings: Settings, store: JobStore, api: str, log_dir: Path, jobs: int) -> float:
    body: dict[str, Any] = {"type": "demo.count", "params": {"n": 1}, "wait": 0, "poll_timeout": 0}
    with requests.Session() as session:
        ids = [
            session.post(f"{api}/v1/jobs", json=body, timeout=30).json()["id"] for _ in range(jobs)
        ]
    keys = [JobKeys(TENANT, i) for i in ids]
    worker = start_worker(settings, store, log_dir, f"drain-{uuid.uuid4().hex[:5]}")
    try:

        def done() -> bool:
            return all(r.status is Status.DONE for r in _records(store, keys))

        wait_until(done, 600, f"{jobs} jobs to drain", step=0.05)
    finally:
        worker.stop()
    # From the first job's start to the last one's end: the worker's boot is not counted.
    records = _records(store, keys)
    first = min(r.started_ms or 0 for r in records)
    last = max(r.finished_ms or 0 for r in records)
    return (last - first) / 1000


def _records(store: JobStore, keys: list[JobKeys]) -> list[JobRecord]:
    return [r for r in store.read_many(keys, poll=False, inline_max=0) if isinstance(r, JobRecord)]


def run(kind: str, trips: int, jobs: int, log_dir: Path) -> dict[str, float]:
    with RedisServer() as redis_server, broker_url(kind, redis_server.url) as url:
        settings = make_test_settings(
            redis_server.url,
            broker_url=url,
            queue=f"bench-{uuid.uuid4().hex[:6]}",
            tenant_max_active=jobs + 10,
        )
        store = JobStore.from_settings(settings)
        server = LiveServer(settings, log_dir, web_workers=1, web_threads=8)
        try:
            worker = start_worker(settings, store, log_dir, f"rt-{uuid.uuid4().hex[:5]}")
            try:
                round_trips(server.url, 20)  # warm-up
                seconds = sorted(round_trips(server.url, trips))
            finally:
                worker.stop()
            drained = drain(settings, store, server.url, log_dir, jobs)
        finally:
            server.stop()
    return {
        "201_median_ms": statistics.median(seconds) * 1000,
        "201_p95_ms": seconds[int(len(seconds) * 0.95) - 1] * 1000,
        "drain_s": drained,
        "drain_jobs_per_s": jobs / drained,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trips", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("redis", "rabbitmq"):
            figures = run(kind, args.trips, args.jobs, Path(tmp))
            shown = ", ".join(f"{k}={v:.1f}" for k, v in figures.items())
            print(f"{kind}: {shown} (load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
