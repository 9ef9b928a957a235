"""Submit throughput: ``POST /v1/jobs`` with ``wait: 0`` vs a bare ``apply_async`` view.

Jobgate as users run it (``jobgate run``, see bench/scenarios/polls.py), with
its worker stopped after start-up, so that the messages stay queued as the
baseline's do: every request validates the body, creates the job (one Lua
script) and sends its Celery message, and writes its access log line.
Baseline (b): ``POST /submit`` of ``bench/baselines/flask_app.py``, which
parses the JSON body and calls ``apply_async`` of a no-op task with
``ignore_result``, on the same broker, under each gunicorn configuration of
``BASELINE_CONFIGS``; Jobgate is compared with the fastest. Repetitions
alternate.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable

from bench.common import (
    BenchError,
    Row,
    RunContext,
    WebServer,
    base_settings,
    children,
    cmdline,
    fresh_redis,
    http_json,
    ratio_spread,
    run_settings,
    spread,
    stack,
    start_baselines,
    start_jobgate_run,
)
from bench.scenarios.polls import CONNECTIONS, alternate, baselines_note, cpu_note, fastest
from bench.wrk import WrkResult, run_wrk

BODY = {"type": "demo.count", "params": {"n": 1}, "wait": 0}


def pause_group(pgid: int) -> Callable[[], None]:
    """SIGSTOP the process group; returns what continues it."""
    os.killpg(pgid, signal.SIGSTOP)
    return lambda: os.killpg(pgid, signal.SIGCONT)


def run(ctx: RunContext) -> list[Row]:
    with fresh_redis() as redis_server, stack() as s:
        settings = base_settings(redis_server.url, ctx.queue("submit"))
        jobgate = start_jobgate_run(s, run_settings(settings), ctx.log_dir, "jobgate-run-submit")
        # No job runs: the Procfile's job worker is paused (SIGSTOP to its
        # group; it is continued before the stack stops it), the rest runs.
        # The job worker consumes the job queue (the sweeper, the control queue only).
        job_worker = f" --queues {settings.queue},"
        paused = 0
        for child in children(jobgate.proc.popen.pid):
            if " worker " in cmdline(child) and job_worker in cmdline(child):
                s.push(pause_group(os.getpgid(child)))
                paused += 1
        if paused != 1:
            raise BenchError(f"found {paused} job workers under jobgate run, expected 1")
        baselines = start_baselines(
            s, settings, "bench.baselines.flask_app:app", ctx.log_dir, "baseline-web-b"
        )
        status, doc = http_json("POST", f"{jobgate.url}/v1/jobs", BODY)
        if status != 202:
            raise BenchError(f"Jobgate's submit answered {status}: {doc}")
        for web in baselines.values():
            status, doc = http_json("POST", f"{web.url}/submit", BODY)
            if status != 202:
                raise BenchError(f"the baseline's submit answered {status}: {doc}")

        def submit(
            url: str,
            api_cpu: Callable[[], float],
            seconds: int,
            relay_cpu: Callable[[], float] = lambda: 0.0,
        ) -> WrkResult:
            return run_wrk(
                url,
                "submit.lua",
                env={"BENCH_BODY": json.dumps(BODY)},
                connections=CONNECTIONS,
                seconds=seconds,
                server_cpu={"api": api_cpu, "relay": relay_cpu, "redis": redis_server.cpu_seconds},
            )

        def submit_jobgate(seconds: int = ctx.seconds) -> WrkResult:
            return submit(
                f"{jobgate.url}/v1/jobs",
                jobgate.api_cpu_seconds,
                seconds,
                jobgate.relay_cpu_seconds,
            )

        def submit_baseline(web: WebServer) -> Callable[[], WrkResult]:
            return lambda: submit(f"{web.url}/submit", web.proc.cpu_seconds, ctx.seconds)

        submit_jobgate(1)  # warm-up
        for web in baselines.values():
            submit(f"{web.url}/submit", web.proc.cpu_seconds, 1)
        base_runs, jg_runs = alternate(
            ctx,
            "submit",
            {label: submit_baseline(web) for label, web in baselines.items()},
            submit_jobgate,
        )
        queued = redis_server.client.zcard(f"jobgate:queue:{settings.queue}")

    best = fastest(base_runs)
    jg = [r.rps for r in jg_runs]
    base = [r.rps for r in base_runs[best]]
    ratio = spread(jg).median / spread(base).median
    p99 = spread([r.p99_ms for r in jg_runs]).text("{:.0f}")
    base_p99 = spread([r.p99_ms for r in base_runs[best]]).text("{:.0f}")
    return [
        Row(
            "submit throughput, 50 connections (b)",
            f"POST /v1/jobs wait 0, req/s (baseline: {best})",
            spread(jg),
            spread(base),
            ratio_spread(jg, base),
            "≥ 0.7x",
            ratio >= 0.7,
            f"Jobgate (jobgate run): {cpu_note(jg_runs)}, p99 {p99} ms; "
            f"{baselines_note(base_runs, best)}; fastest baseline's p99 {base_p99} ms; "
            f"{queued:,} jobs queued at the end",
        )
    ]
