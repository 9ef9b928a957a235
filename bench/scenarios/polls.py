"""Poll throughput (vs bare Flask + HGETALL/EXPIRE) and plain polls under 200 long polls.

Jobgate as users run it: ``jobgate run`` (what ``make run`` starts: the
Procfile's web, worker, beat, flower and sweeper under the supervisor, which
forwards every line, the access log included, at the default INFO level), a
worker with concurrency 2, and 20 ``demo.count`` jobs that sleep without
reporting (``delay`` 60 x ``n`` 10, ``ignore_cancel``, ``poll_timeout`` 0):
2 RUNNING, 18 queued. wrk polls the 2 RUNNING ones.

Baseline (a): ``bench/baselines/flask_app.py`` ``GET /poll/<key>`` on 2
hashes holding copies of those 2 records, under each gunicorn configuration
of ``BASELINE_CONFIGS`` (sync 2x1, gthread 2x4, Jobgate's own); Jobgate is
compared with the fastest of them (the highest median req/s).

All the servers run side by side and the repetitions alternate (each
baseline, then Jobgate, again), so all see the same noise. The API's CPU per
request (gunicorn and, for Jobgate, the supervisor relaying its log lines),
Redis's, and wrk's own CPU are in the notes.

Then 200 threads hold ``GET /v1/jobs/{id}?wait=30`` open on a RUNNING job
while wrk measures plain polls again: their throughput against the plain
polls alone above.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from bench.common import (
    BenchError,
    Row,
    RunContext,
    WebServer,
    base_settings,
    fresh_redis,
    http_json,
    log,
    ratio_spread,
    run_settings,
    spread,
    stack,
    start_baselines,
    start_jobgate_run,
    wait_until,
)
from bench.wrk import WrkResult, run_wrk

CONNECTIONS = 50
SLEEPING_JOB = {
    "type": "demo.count",
    "params": {"n": 10, "delay": 60, "ignore_cancel": True},
    "poll_timeout": 0,
    "wait": 0,
}
JOBS = 20
LONG_POLLS = 200
LONG_POLL_WAIT = 30


def rep_text(result: WrkResult) -> str:
    return (
        f"{result.rps:,.0f} req/s p99 {result.p99_ms:.1f} ms "
        f"(wrk CPU {result.wrk_cores:.2f}, servers {result.server_cores:.2f} cores)"
    )


class LongPolls:
    """``LONG_POLLS`` threads, each holding one ``?wait=30`` poll open, again and again."""

    def __init__(self, url: str, path: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = f"{path}?wait={LONG_POLL_WAIT}"
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.early = 0  # answered well before the wait: not held
        self.failures = 0
        self.threads = [
            threading.Thread(target=self._hold, daemon=True, name=f"long-poll-{i}")
            for i in range(LONG_POLLS)
        ]

    def __enter__(self) -> LongPolls:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()  # held requests end with their wait; the threads are daemons

    def _add(self, in_flight: int = 0, early: int = 0, failures: int = 0) -> None:
        with self.lock:
            self.in_flight += in_flight
            self.early += early
            self.failures += failures

    def _hold(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=LONG_POLL_WAIT + 15)
        while not self.stop.is_set():
            started = time.monotonic()
            self._add(in_flight=1)
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                response.read()
                ok = response.status == 202
            except OSError:
                ok = False
                conn.close()
            finally:
                self._add(in_flight=-1)
            if not ok:
                self._add(failures=1)
            if time.monotonic() - started < LONG_POLL_WAIT - 5:
                self._add(early=1)
                self.stop.wait(1.0)  # never spin against a server that will not hold us


def _running_jobs(url: str, ids: list[str]) -> list[str]:
    running = []
    for job_id in ids:
        _, doc = http_json("GET", f"{url}/v1/jobs/{job_id}")
        if doc.get("status") == "RUNNING":
            running.append(job_id)
    return running


def fastest(runs: dict[str, list[WrkResult]]) -> str:
    """The baseline configuration with the highest median req/s."""
    return max(runs, key=lambda label: spread([r.rps for r in runs[label]]).median)


def cpu_note(results: list[WrkResult]) -> str:
    """Median CPU µs per request of the API (with the supervisor's relay of
    its lines, under jobgate run) and of Redis, and wrk's own CPU."""
    api = spread([r.us_per_request("api") + r.us_per_request("relay") for r in results]).median
    relay = spread([r.us_per_request("relay") for r in results]).median
    redis_us = spread([r.us_per_request("redis") for r in results]).median
    wrk = spread([r.wrk_cores for r in results]).median
    errors = sum(r.errors for r in results)
    of_which = f" (of which the supervisor's relay {relay:,.0f} µs)" if relay else ""
    text = (
        f"CPU per request: API {api:,.0f} µs{of_which}, Redis {redis_us:,.0f} µs; "
        f"wrk {wrk:.2f} of a core"
    )
    return text + (f"; {errors} errors" if errors else "")


def baselines_note(runs: dict[str, list[WrkResult]], best: str) -> str:
    parts = []
    for label, results in runs.items():
        rps = spread([r.rps for r in results]).median
        mark = " (fastest)" if label == best else ""
        parts.append(f"{label}{mark} {rps:,.0f} req/s, {cpu_note(results)}")
    return "baselines: " + "; ".join(parts)


def alternate(
    ctx: RunContext,
    what: str,
    baselines: dict[str, Callable[[], WrkResult]],
    jobgate: Callable[[], WrkResult],
) -> tuple[dict[str, list[WrkResult]], list[WrkResult]]:
    """``ctx.reps`` rounds of every baseline then Jobgate; the results of each."""
    base_runs: dict[str, list[WrkResult]] = {label: [] for label in baselines}
    jg_runs: list[WrkResult] = []
    for rep in range(ctx.reps):
        for label, measure in baselines.items():
            base_runs[label].append(measure())
        jg_runs.append(jobgate())
        each = "; ".join(f"{label} {rep_text(runs[-1])}" for label, runs in base_runs.items())
        log(f"{what} rep {rep + 1}: jobgate {rep_text(jg_runs[-1])}; baselines: {each}")
    return base_runs, jg_runs


def run(ctx: RunContext) -> list[Row]:
    with fresh_redis() as redis_server, stack() as s:
        settings = base_settings(redis_server.url, ctx.queue("polls"))
        jobgate = start_jobgate_run(s, run_settings(settings), ctx.log_dir)
        baselines = start_baselines(
            s, settings, "bench.baselines.flask_app:app", ctx.log_dir, "baseline-web-a"
        )
        ids = []
        for _ in range(JOBS):
            status, doc = http_json("POST", f"{jobgate.url}/v1/jobs", SLEEPING_JOB)
            if status != 202:
                raise BenchError(f"submit answered {status}: {doc}")
            ids.append(str(doc["id"]))
        running = wait_until(
            lambda: (r := _running_jobs(jobgate.url, ids)) and len(r) == 2 and r,
            30,
            "2 jobs to be RUNNING",
            step=0.2,
        )
        s.push(lambda: _cancel_all(jobgate.url, ids))  # frees the worker before it stops
        for i, job_id in enumerate(running):
            record: Any = redis_server.client.hgetall(f"jobgate:job:{{default:{job_id}}}")
            redis_server.client.hset(f"bench:poll:job{i}", mapping=record)
        jobgate_paths = ",".join(f"/v1/jobs/{i}" for i in running)
        baseline_paths = ",".join(f"/poll/job{i}" for i in range(len(running)))

        def poll(
            url: str,
            paths: str,
            api_cpu: Callable[[], float],
            seconds: int,
            relay_cpu: Callable[[], float] = lambda: 0.0,
        ) -> WrkResult:
            return run_wrk(
                url,
                "poll.lua",
                env={"BENCH_PATHS": paths},
                connections=CONNECTIONS,
                seconds=seconds,
                server_cpu={"api": api_cpu, "relay": relay_cpu, "redis": redis_server.cpu_seconds},
            )

        def poll_jobgate(seconds: int = ctx.seconds) -> WrkResult:
            return poll(
                jobgate.url, jobgate_paths, jobgate.api_cpu_seconds, seconds,
                jobgate.relay_cpu_seconds,
            )  # fmt: skip

        def poll_baseline(web: WebServer) -> Callable[[], WrkResult]:
            return lambda: poll(web.url, baseline_paths, web.proc.cpu_seconds, ctx.seconds)

        # Warm every server up (imports on first request, connection pools).
        poll_jobgate(1)
        for web in baselines.values():
            poll(web.url, baseline_paths, web.proc.cpu_seconds, 1)
        base_runs, jg_runs = alternate(
            ctx,
            "polls",
            {label: poll_baseline(web) for label, web in baselines.items()},
            poll_jobgate,
        )

        # Plain polls while 200 long polls are held open on a RUNNING job.
        held_runs: list[WrkResult] = []
        with LongPolls(jobgate.url, f"/v1/jobs/{running[0]}") as holders:
            wait_until(lambda: holders.in_flight == LONG_POLLS, 30, "200 long polls to be sent")
            time.sleep(1.0)  # they have reached the server and are parked
            for rep in range(ctx.reps):
                held_runs.append(poll_jobgate())
                log(
                    f"polls under {holders.in_flight} long polls rep {rep + 1}: "
                    f"{rep_text(held_runs[-1])}"
                )
            held_note = (
                f"{holders.in_flight} long polls in flight at the end; "
                f"{holders.early} answered early, {holders.failures} failed"
            )
        jobgate.check_alive()

    best = fastest(base_runs)
    jg_rps = [r.rps for r in jg_runs]
    base_rps = [r.rps for r in base_runs[best]]
    held_rps = [r.rps for r in held_runs]
    jg_p99 = [r.p99_ms for r in jg_runs]
    base_p99 = [r.p99_ms for r in base_runs[best]]
    rps_ratio = _ratio(jg_rps, base_rps)
    p99_ratio = _ratio(jg_p99, base_p99)
    held_ratio = _ratio(held_rps, jg_rps)
    return [
        Row(
            "poll throughput, 50 connections (a)",
            f"GET /v1/jobs/{{id}} req/s (baseline: {best})",
            spread(jg_rps),
            spread(base_rps),
            ratio_spread(jg_rps, base_rps),
            "≥ 0.75x",
            rps_ratio >= 0.75,
            f"Jobgate (jobgate run): {cpu_note(jg_runs)}; {baselines_note(base_runs, best)}",
        ),
        Row(
            "poll latency, 50 connections (a)",
            f"p99 ms (baseline: {best})",
            spread(jg_p99),
            spread(base_p99),
            ratio_spread(jg_p99, base_p99),
            "≤ 2x",
            p99_ratio <= 2.0,
            "p50 ms: Jobgate "
            f"{spread([r.p50_ms for r in jg_runs]).text('{:.1f}')}, baseline "
            f"{spread([r.p50_ms for r in base_runs[best]]).text('{:.1f}')}",
            fmt="{:.1f}",
        ),
        Row(
            "long polls: 200 x ?wait=30 held",
            "plain polls req/s meanwhile",
            spread(held_rps),
            spread(jg_rps),
            ratio_spread(held_rps, jg_rps),
            "≥ 0.5x alone",
            held_ratio >= 0.5,
            f"{cpu_note(held_runs)}; {held_note}",
        ),
    ]


def _ratio(numerators: list[float], denominators: list[float]) -> float:
    return spread(numerators).median / spread(denominators).median


def _cancel_all(url: str, ids: list[str]) -> None:
    for job_id in ids:
        try:
            http_json("DELETE", f"{url}/v1/jobs/{job_id}", timeout=5)
        except OSError:
            return
