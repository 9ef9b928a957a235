"""End-to-end latency, one client: submit-and-wait vs ``apply_async(...).get()``.

Jobgate: ``POST /v1/jobs`` of ``demo.count`` ``n=1`` with ``wait: 5`` over one
keep-alive connection, answered 201 with the result inline; Jobgate as users
run it (``jobgate run``: the Procfile's processes, the access log on, a worker
with concurrency 2), one request at a time. Baseline (d): the bare Celery
``echo`` task, ``apply_async(...).get()`` from this process, a bare worker with
concurrency 2, and the same Redis as result backend (only this baseline has
one); its worker sends task events when Jobgate's do (JOBGATE_TASK_EVENTS).
Both are timed per request with ``time.perf_counter``; 20 warm-up calls
first, then repetitions of ``REQUESTS`` calls, alternating.
"""

from __future__ import annotations

import http.client
import itertools
import json
import statistics
import time
from datetime import datetime
from urllib.parse import urlsplit

from bench.baselines.celery_app import ECHO
from bench.common import (
    BenchError,
    Row,
    RunContext,
    base_settings,
    baseline_app,
    fresh_redis,
    log,
    run_settings,
    spread,
    stack,
    start_baseline_worker,
    start_jobgate_run,
)

REQUESTS = 200
WARM_UP = 20
BODY = json.dumps({"type": "demo.count", "params": {"n": 1}, "wait": 5})


# Where a submit-and-wait spends its time, from the client's clock and the
# record's (Redis's TIME, the same host clock; ms resolution, so means).
PHASES = (
    "client to create (HTTP, validation)",
    "create to start (enqueue, worker pick-up)",
    "start to finish (the job)",
    "finish to answer (wake, read, respond)",
)


def _ms(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def jobgate_latencies(url: str, count: int, phases: list[list[float]] | None = None) -> list[float]:
    """Latencies in ms; appends each request's phase durations to ``phases``."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    times = []
    try:
        for _ in range(count):
            wall = time.time() * 1000
            started = time.perf_counter()
            conn.request("POST", "/v1/jobs", BODY, headers)
            response = conn.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            times.append(elapsed)
            if response.status != 201:
                raise BenchError(f"submit with wait answered {response.status}: {body[:300]!r}")
            if phases is not None:
                doc = json.loads(body)
                marks = [
                    wall,
                    _ms(doc["created_at"]),
                    _ms(doc["started_at"]),
                    _ms(doc["finished_at"]),
                    wall + elapsed,
                ]
                phases.append([b - a for a, b in itertools.pairwise(marks)])
    finally:
        conn.close()
    return times


def baseline_latencies(redis_url: str, queue: str, count: int) -> list[float]:
    echo = baseline_app(redis_url, queue).tasks[ECHO]
    times = []
    for i in range(count):
        started = time.perf_counter()
        value = echo.apply_async(args=[i], queue=queue).get(timeout=30)
        times.append((time.perf_counter() - started) * 1000)
        if value != i:
            raise BenchError(f"the echo task answered {value!r}")
    return times


def run(ctx: RunContext) -> list[Row]:
    jg_p50: list[float] = []
    base_p50: list[float] = []
    jg_p99: list[float] = []
    phases: list[list[float]] = []
    base_p99: list[float] = []
    with fresh_redis() as r, stack() as s:
        settings = base_settings(r.url, ctx.queue("latency"))
        base_queue = ctx.queue("latency-baseline")
        web = start_jobgate_run(s, run_settings(settings), ctx.log_dir, "jobgate-run-latency")
        start_baseline_worker(
            s,
            r.url,
            base_queue,
            ctx.log_dir,
            "baseline-latency-worker",
            task_events=settings.task_events,
        )
        jobgate_latencies(web.url, WARM_UP)
        baseline_latencies(r.url, base_queue, WARM_UP)
        for rep in range(ctx.reps):
            base = baseline_latencies(r.url, base_queue, REQUESTS)
            jg = jobgate_latencies(web.url, REQUESTS, phases)
            base_p50.append(statistics.median(base))
            jg_p50.append(statistics.median(jg))
            base_p99.append(statistics.quantiles(base, n=100)[98])
            jg_p99.append(statistics.quantiles(jg, n=100)[98])
            log(
                f"latency rep {rep + 1}: baseline p50 {base_p50[-1]:.2f} ms, "
                f"jobgate p50 {jg_p50[-1]:.2f} ms"
            )
    extra = spread(jg_p50).median - spread(base_p50).median
    pairs = [a - b for a, b in zip(jg_p50, base_p50, strict=True)]
    return [
        Row(
            "end-to-end latency, one client (d)",
            "p50 ms, submit n=1 wait 5 → 201",
            spread(jg_p50),
            spread(base_p50),
            f"+{extra:.2f} ms ({min(pairs):+.2f}..{max(pairs):+.2f})",
            "≤ baseline + 3 ms",
            extra <= 3.0,
            f"p99 ms: Jobgate {spread(jg_p99).text('{:.1f}')}, baseline "
            f"{spread(base_p99).text('{:.1f}')}; {REQUESTS} requests a repetition; "
            "Jobgate's time, mean ms: "
            + ", ".join(
                f"{name} {statistics.fmean(p[i] for p in phases):.1f}"
                for i, name in enumerate(PHASES)
            ),
            fmt="{:.2f}",
        )
    ]
