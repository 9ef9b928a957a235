"""Drain: 5,000 queued jobs run by a prefork worker (concurrency 2), vs bare Celery.

Jobgate: 5,000 ``demo.count`` ``n=1`` jobs are created and enqueued with the
worker stopped, in-process through the API's own objects (``create_app``'s
store and ``enqueue``: the same Lua create and Celery message as a submit,
without HTTP). Then ``celery --app workers.worker worker`` starts with
concurrency 2. Baseline (c): 5,000 ``apply_async`` of the bare no-op task
(ignore_result), then the bare worker with concurrency 2 and the same
delivery settings (acks_late, prefetch 1).

Both are timed the same way, from the broker: the clock starts when the
queue list first shrinks (the first message was taken) and stops when the list
is empty and nothing is left unacknowledged (with ``acks_late`` a message is
acknowledged after its task returned). For Jobgate every record is then
checked to be DONE. Repetitions alternate, each on an emptied Redis.

CPU per job (user + system, from /proc) is reported for the worker's main
process (the consumer: kombu, the pool's bookkeeping) and its pool processes
(the task) apart, and for Redis: on a shared machine the jobs/s move with
the load, the CPU a job costs much less.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask

from app.context import Jobgate
from bench.baselines.celery_app import NOOP
from bench.common import (
    BenchError,
    BenchRedis,
    Proc,
    Row,
    RunContext,
    base_settings,
    baseline_app,
    celery_worker_argv,
    child_env,
    fresh_redis,
    log,
    pid_cpu_seconds,
    ratio_spread,
    spread,
)
from workers import registry
from workers.broker import queue_lists
from workers.config import Settings
from workers.keys import JobKeys
from workers.queues import job_queue
from workers.store import CreateOutcome
from workers.store.values import canonical_params

JOBS = 5_000
# Issue 17: drain within 25 % of bare Celery prefork x 2.
TARGET = 0.75
POLL_EVERY = 0.01
CONFIRM = 0.2
BATCH = 1_000


@dataclass(frozen=True)
class Drain:
    jobs: int
    seconds: float
    worker_cpu: float
    redis_cpu: float
    main_cpu: float = 0.0  # the worker's main process alone (the rest: its pool)

    @property
    def pool_cpu(self) -> float:
        return self.worker_cpu - self.main_cpu

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


_apps: dict[tuple[str, str], Flask] = {}


def jobgate_app(settings: Settings) -> Flask:
    """Jobgate's API app, in this process, once per Redis and queue."""
    from app import create_app  # noqa: PLC0415 - only the scenarios that submit in-process

    key = (settings.redis_url, settings.queue)
    if key not in _apps:
        logging.getLogger("app.auth").setLevel(logging.ERROR)  # "AUTH IS OFF", once per app
        _apps[key] = create_app(settings)
    return _apps[key]


def submit_jobgate(app: Flask, count: int, prefix: str, **job: Any) -> list[JobKeys]:
    """Create and enqueue ``count`` demo.count jobs the way POST /v1/jobs does."""
    service: Jobgate = app.extensions["jobgate"]
    job_type = registry.get("demo.count")
    assert job_type is not None
    params = job.pop("params", {"n": 1})
    params_json = canonical_params(job_type.params().dump(job_type.load_params(params)))
    max_runtime = job_type.runtime_limit(service.settings.max_runtime)
    created = []
    for i in range(count):
        keys = JobKeys("default", f"{prefix}-{i}")
        outcome, _record = service.store.create(
            keys,
            job_type.name,
            params_json,
            poll_timeout=job.get("poll_timeout", 3600),
            retention=job.get("retention", service.settings.retention_default),
            max_runtime=max_runtime,
            queue=job_queue(service.settings, job_type.queue),
            priority=job_type.priority,
        )
        if outcome is not CreateOutcome.CREATED:
            raise BenchError(f"create answered {outcome!r}")
        service.enqueue(keys, job_type, job_type.priority)
        created.append(keys)
    return created


def statuses(client: redis.Redis, jobs: list[JobKeys]) -> dict[str, int]:
    """How many of ``jobs`` are in each status (pipelined, in batches)."""
    counts: dict[str, int] = {}
    for start in range(0, len(jobs), BATCH):
        pipe = client.pipeline(transaction=False)
        for keys in jobs[start : start + BATCH]:
            pipe.hget(keys.record, "status")
        for status in pipe.execute():
            counts[str(status)] = counts.get(str(status), 0) + 1
    return counts


def time_drain(r: BenchRedis, queue: str, jobs: int, worker: Proc, timeout: float = 600) -> Drain:
    """Wait for the worker to take the first message, then for the queue to be done."""
    client = r.client

    def backlog() -> tuple[int, int]:
        pipe = client.pipeline(transaction=False)
        for name in queue_lists(queue):  # Jobgate's priority lists (the baseline uses the first)
            pipe.llen(name)
        pipe.hlen("unacked")
        *waiting, unacked = pipe.execute()
        return sum(int(n) for n in waiting), int(unacked)

    deadline = time.monotonic() + timeout
    started = cpu0 = rcpu0 = main0 = 0.0
    while True:
        if time.monotonic() > deadline:
            raise BenchError(f"{worker.name} did not drain {jobs} jobs within {timeout:g} s")
        waiting, unacked = backlog()
        now = time.monotonic()
        if not started and waiting < jobs:
            started, cpu0, rcpu0 = now, worker.cpu_seconds(), r.cpu_seconds()
            main0 = pid_cpu_seconds(worker.pgid)
        if started and waiting == 0 and unacked == 0:
            # kombu pops a message (BRPOP) before it records it as unacked:
            # an empty list and no unacked message may be the last message in
            # flight. Done only if it still holds a moment later.
            worker_cpu, redis_cpu = worker.cpu_seconds() - cpu0, r.cpu_seconds() - rcpu0
            main_cpu = pid_cpu_seconds(worker.pgid) - main0
            time.sleep(CONFIRM)
            if backlog() == (0, 0):
                return Drain(jobs, now - started, worker_cpu, redis_cpu, main_cpu)
            continue
        if not started:
            worker.check_alive()
        time.sleep(POLL_EVERY)


def drain_jobgate(r: BenchRedis, ctx: RunContext, rep: int) -> tuple[Drain, str]:
    r.flush()
    settings = base_settings(r.url, ctx.queue("drain"))
    app = jobgate_app(settings)
    jobs = submit_jobgate(app, JOBS, f"drain{rep}")
    if sum(r.client.llen(name) for name in queue_lists(settings.queue)) != JOBS:
        raise BenchError("the Jobgate messages are not all queued")
    argv = celery_worker_argv(
        "workers.worker", settings.queue, 2, f"jobgate-drain{rep}", settings.log_level
    )
    worker = Proc(f"jobgate-drain-worker-{rep}", argv, child_env(settings), ctx.log_dir)
    try:
        drain = time_drain(r, settings.queue, JOBS, worker)
    finally:
        worker.stop(15)
    done = statuses(r.client, jobs)
    if done.get("DONE") != JOBS:
        raise BenchError(f"after the drain (broker empty, nothing unacked) the jobs are {done}")
    return drain, record_span(r.client, jobs)


def record_span(client: redis.Redis, jobs: list[JobKeys]) -> str:
    """First start to last finish, from the records (Redis's clock)."""
    first, last = float("inf"), 0.0
    for start in range(0, len(jobs), BATCH):
        pipe = client.pipeline(transaction=False)
        for keys in jobs[start : start + BATCH]:
            pipe.hmget(keys.record, "started", "finished")
        for started, finished in pipe.execute():
            first, last = min(first, float(started)), max(last, float(finished))
    return f"{len(jobs) / ((last - first) / 1000):,.0f}"


def drain_baseline(r: BenchRedis, ctx: RunContext, rep: int) -> Drain:
    r.flush()
    queue = ctx.queue("drain-baseline")
    app = baseline_app(r.url, queue)
    noop = app.tasks[NOOP]
    for i in range(JOBS):
        noop.apply_async(args=[f"default:drain{rep}-{i}"], queue=queue)
    if r.client.llen(queue) != JOBS:
        raise BenchError("the baseline messages are not all queued")
    argv = celery_worker_argv("bench.baselines.celery_app", queue, 2, f"base{rep}", "WARNING")
    env = child_env(None, BENCH_REDIS_URL=r.url, BENCH_QUEUE=queue)
    worker = Proc(f"baseline-drain-worker-{rep}", argv, env, ctx.log_dir)
    try:
        return time_drain(r, queue, JOBS, worker)
    finally:
        worker.stop(15)


def run(ctx: RunContext) -> list[Row]:
    jg: list[Drain] = []
    base: list[Drain] = []
    spans: list[str] = []
    with fresh_redis() as r:
        for rep in range(ctx.reps):
            base.append(drain_baseline(r, ctx, rep))
            drain, span = drain_jobgate(r, ctx, rep)
            jg.append(drain)
            spans.append(span)
            log(
                f"drain rep {rep + 1}: baseline {base[-1].rate:,.0f} jobs/s, "
                f"jobgate {jg[-1].rate:,.0f} jobs/s (records: {span} jobs/s)"
            )
    jg_rate = [d.rate for d in jg]
    base_rate = [d.rate for d in base]
    ratio = spread(jg_rate).median / spread(base_rate).median
    return [
        Row(
            f"drain {JOBS:,} queued jobs, prefork x 2 (c)",
            "jobs/s",
            spread(jg_rate),
            spread(base_rate),
            ratio_spread(jg_rate, base_rate),
            f"≥ {TARGET}x",
            ratio >= TARGET,
            f"CPU per job: Jobgate worker {_ms(jg, 'worker_cpu')} ms (main process "
            f"{_ms(jg, 'main_cpu')}, pool {_ms(jg, 'pool_cpu')}) + Redis "
            f"{_ms(jg, 'redis_cpu')} ms, baseline worker {_ms(base, 'worker_cpu')} ms (main "
            f"{_ms(base, 'main_cpu')}, pool {_ms(base, 'pool_cpu')}) + Redis "
            f"{_ms(base, 'redis_cpu')} ms; CPU ratio (worker + Redis) "
            f"{_cpu_ratio(jg, base):.2f}x; Jobgate first start → last finish from the "
            f"records: {', '.join(spans)} jobs/s",
            fmt="{:,.0f}",
        )
    ]


def _ms(drains: list[Drain], what: str) -> str:
    return f"{_per_job(drains, what):.2f}"


def _per_job(drains: list[Drain], what: str) -> float:
    return spread([getattr(d, what) / d.jobs * 1000 for d in drains]).median


def _cpu_ratio(jg: list[Drain], base: list[Drain]) -> float:
    """Baseline CPU per job over Jobgate's, worker and Redis: what the jobs/s
    ratio would be on an otherwise idle machine of the same cores."""
    jg_ms = _per_job(jg, "worker_cpu") + _per_job(jg, "redis_cpu")
    return (_per_job(base, "worker_cpu") + _per_job(base, "redis_cpu")) / jg_ms
