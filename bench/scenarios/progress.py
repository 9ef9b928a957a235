"""Progress cost: ``demo.count n=100000 delay 0`` with and without progress reporting.

In a real worker (concurrency 2) and API: ``demo.count`` against
``bench.count_quiet`` (``bench/baselines/quiet_count.py``: the very same loop,
run by the same worker through the same start and finish, with a ``ctx``
whose ``progress``/``check``/``publish`` do nothing). Each is submitted with
``wait: 0`` and ``poll_timeout: 0``, and this process watches its record
(nothing polls the API, so no waiter wakes up on each progress write); its
time is the record's ``finished - started`` (Redis's clock, ms).
Repetitions alternate.

Redis writes: ``INFO commandstats`` ``evalsha`` calls during the whole job
(start, progress, watchdog checks, finish), Jobgate minus the quiet run
beside it: the writes progress reporting adds. Cross-checked in-process: the
loop run with a ``JobContext`` over a real ``JobStore`` (``ctx.writes``, and
the ``evalsha`` delta) against the quiet context.
"""

from __future__ import annotations

import time
from typing import Any

from bench.baselines.quiet_count import quiet
from bench.common import (
    BenchError,
    BenchRedis,
    Row,
    RunContext,
    WebServer,
    base_settings,
    fresh_redis,
    http_json,
    log,
    ratio_spread,
    spread,
    stack,
    start_jobgate_web,
    start_jobgate_worker,
    wait_until,
)
from workers.jobs.demo import count
from workers.keys import JobKeys
from workers.runtime import JobContext
from workers.store import JobStore

N = 100_000
MAX_WRITES = 110
# Issue 17: the loop reporting progress within 10 % of the silent loop.
TARGET = 1.1


def run_job(r: BenchRedis, web: WebServer, job_type: str) -> tuple[float, int]:
    """(run time in ms from the record, evalsha calls during the job)."""
    before = r.evalsha_calls()
    body = {"type": job_type, "params": {"n": N}, "wait": 0, "poll_timeout": 0}
    status, doc = http_json("POST", f"{web.url}/v1/jobs", body)
    if status not in (201, 202):
        raise BenchError(f"submit of {job_type} answered {status}: {doc}")
    record = f"jobgate:job:{{default:{doc['id']}}}"
    wait_until(
        lambda: r.client.hget(record, "status") in ("DONE", "FAILED"),
        120,
        f"{job_type} to finish",
        step=0.02,
    )
    fields: Any = r.client.hmget(record, "started", "finished", "status")
    started, finished, status_now = fields
    if status_now != "DONE":
        raise BenchError(f"{job_type} ended {status_now}")
    # The API's create and the bench's submit response are not the job's writes.
    return float(finished) - float(started), r.evalsha_calls() - before


def in_process(r: BenchRedis, settings_queue: str) -> tuple[list[float], list[float], int, int]:
    """The loop in this process: JobContext over a real JobStore vs a quiet ctx."""
    settings = base_settings(r.url, settings_queue)
    store = JobStore.from_settings(settings)
    loud_ms: list[float] = []
    quiet_ms: list[float] = []
    writes = evalshas = 0
    for rep in range(3):
        keys = JobKeys("default", f"inproc-{rep}")
        store.create(
            keys, "demo.count", '{"n": 1}', poll_timeout=0, retention=300, max_runtime=3600
        )
        if not store.start(keys).run:
            raise BenchError("the in-process job did not start")
        ctx = JobContext(store, keys)
        before = r.evalsha_calls()
        started = time.perf_counter()
        count(ctx, N)
        loud_ms.append((time.perf_counter() - started) * 1000)
        evalshas = r.evalsha_calls() - before
        writes = ctx.writes
        started = time.perf_counter()
        count(quiet(), N)
        quiet_ms.append((time.perf_counter() - started) * 1000)
    return loud_ms, quiet_ms, writes, evalshas


def run(ctx: RunContext) -> list[Row]:
    loud: list[float] = []
    silent: list[float] = []
    loud_calls: list[float] = []
    quiet_calls: list[float] = []
    with fresh_redis() as r, stack() as s:
        settings = base_settings(
            r.url, ctx.queue("progress"), job_modules=("bench.baselines.quiet_count",)
        )
        start_jobgate_worker(s, settings, r.client, ctx.log_dir, "jobgate-progress-worker")
        web = start_jobgate_web(s, settings, ctx.log_dir, "jobgate-web-progress")
        run_job(r, web, "demo.count")  # warm-up: imports, scripts, pool processes
        run_job(r, web, "bench.count_quiet")
        for rep in range(ctx.reps):
            quiet_ms, quiet_n = run_job(r, web, "bench.count_quiet")
            loud_ms, loud_n = run_job(r, web, "demo.count")
            silent.append(quiet_ms)
            loud.append(loud_ms)
            quiet_calls.append(quiet_n)
            loud_calls.append(loud_n)
            log(
                f"progress rep {rep + 1}: quiet {quiet_ms:.0f} ms ({quiet_n} evalsha), "
                f"demo.count {loud_ms:.0f} ms ({loud_n} evalsha)"
            )
        inproc_loud, inproc_quiet, writes, evalshas = in_process(r, ctx.queue("progress-inproc"))
    added = [a - b for a, b in zip(loud_calls, quiet_calls, strict=True)]
    ratio = spread(loud).median / spread(silent).median
    inproc_ratio = spread(inproc_loud).median / spread(inproc_quiet).median
    return [
        Row(
            f"progress cost, demo.count n={N:,} in a worker",
            "run time ms (record started..finished)",
            spread(loud),
            spread(silent),
            ratio_spread(loud, silent),
            f"≤ {TARGET}x",
            ratio <= TARGET,
            f"in-process loop only: {spread(inproc_loud).text('{:.0f}')} ms vs quiet ctx "
            f"{spread(inproc_quiet).text('{:.0f}')} ms = {inproc_ratio:.2f}x",
        ),
        Row(
            f"progress writes, demo.count n={N:,}",
            "Redis writes added by progress (evalsha, worker run minus quiet run)",
            spread(added),
            None,
            f"{spread(added).median:.0f} writes",
            f"≤ {MAX_WRITES}",
            spread(added).median <= MAX_WRITES,
            f"evalsha per job: demo.count {spread(loud_calls).text()}, quiet "
            f"{spread(quiet_calls).text()}; in-process ctx.writes {writes}, evalsha {evalshas}",
        ),
    ]
