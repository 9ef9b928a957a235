"""Submit throughput: ``POST /v1/jobs`` with ``wait: 0`` vs a bare ``apply_async`` view.

Jobgate: ``jobgate web`` with its defaults; every request validates the body,
creates the job (one Lua script) and sends its Celery message. Baseline (b):
``POST /submit`` of ``bench/baselines/flask_app.py``, which parses the JSON
body and calls ``apply_async`` of a no-op task with ``ignore_result``, under
the same gunicorn command line and the same broker. No worker runs: the
messages stay queued in both cases. Repetitions alternate.
"""

from __future__ import annotations

import json

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
    spread,
    stack,
    start_baseline_web,
    start_jobgate_web,
)
from bench.scenarios.polls import CONNECTIONS, rep_text, wrk_note
from bench.wrk import WrkResult, run_wrk

BODY = {"type": "demo.count", "params": {"n": 1}, "wait": 0}


def run(ctx: RunContext) -> list[Row]:
    with fresh_redis() as redis_server, stack() as s:
        settings = base_settings(redis_server.url, ctx.queue("submit"))
        jobgate = start_jobgate_web(s, settings, ctx.log_dir, "jobgate-web-submit")
        baseline = start_baseline_web(
            s, settings, "bench.baselines.flask_app:app", ctx.log_dir, "baseline-web-b"
        )
        status, doc = http_json("POST", f"{jobgate.url}/v1/jobs", BODY)
        if status != 202:
            raise BenchError(f"Jobgate's submit answered {status}: {doc}")
        status, doc = http_json("POST", f"{baseline.url}/submit", BODY)
        if status != 202:
            raise BenchError(f"the baseline's submit answered {status}: {doc}")

        def submit(web: WebServer, path: str, seconds: int) -> WrkResult:
            return run_wrk(
                web.url + path,
                "submit.lua",
                env={"BENCH_BODY": json.dumps(BODY)},
                connections=CONNECTIONS,
                seconds=seconds,
                server_cpu=lambda: web.proc.cpu_seconds() + redis_server.cpu_seconds(),
            )

        submit(jobgate, "/v1/jobs", 1)  # warm-up
        submit(baseline, "/submit", 1)
        base_runs: list[WrkResult] = []
        jg_runs: list[WrkResult] = []
        for rep in range(ctx.reps):
            base_runs.append(submit(baseline, "/submit", ctx.seconds))
            jg_runs.append(submit(jobgate, "/v1/jobs", ctx.seconds))
            log(
                f"submit rep {rep + 1}: baseline {rep_text(base_runs[-1])}; "
                f"jobgate {rep_text(jg_runs[-1])}"
            )
        queued = redis_server.client.zcard(f"jobgate:queue:{settings.queue}")

    jg = [r.rps for r in jg_runs]
    base = [r.rps for r in base_runs]
    ratio = spread(jg).median / spread(base).median
    p99 = spread([r.p99_ms for r in jg_runs]).text("{:.0f}")
    base_p99 = spread([r.p99_ms for r in base_runs]).text("{:.0f}")
    return [
        Row(
            "submit throughput, 50 connections (b)",
            "POST /v1/jobs wait 0, req/s",
            spread(jg),
            spread(base),
            ratio_spread(jg, base),
            "≥ 0.6x",
            ratio >= 0.6,
            f"Jobgate: {wrk_note(jg_runs)}, p99 {p99} ms; baseline: {wrk_note(base_runs)}, "
            f"p99 {base_p99} ms; {queued:,} jobs queued at the end",
        )
    ]
