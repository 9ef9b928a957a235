"""``python -m bench`` (``make bench``): every scenario of issue 7, then bench/results.md.

Each scenario starts what it needs (its own redis-server on a free port, the
servers, the workers) and stops all of it, whatever happens. The table is
appended to bench/results.md with the date, the commit and the machine;
logs go to bench/out/<run>/ (git-ignored).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.common import BENCH, OUT, ROOT, BenchError, Row, RunContext, log
from bench.wrk import ensure_wrk

RESULTS = BENCH / "results.md"
BUDGET_SECONDS = 15 * 60
KEEP_RUNS = 5
SCENARIOS = ("polls", "submit", "latency", "progress", "drain", "memory")
HEADER = """# Benchmark results

Appended by `make bench` (`python -m bench`); see bench/README.md for what each
scenario measures, its baseline and how to read a row. Every figure is the
median of the repetitions with (min..max) beside it; ratios compare medians,
with the range of the paired repetitions (baseline and Jobgate runs alternate).
"""


def scenario(name: str) -> Callable[[RunContext], list[Row]]:
    module = __import__(f"bench.scenarios.{name}", fromlist=["run"])
    run: Callable[[RunContext], list[Row]] = module.run
    return run


def git(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return subprocess.CompletedProcess(["git", *args], 2, "", "")


def commit() -> str:
    head = git("rev-parse", "--short", "HEAD").stdout.strip() or "unknown"
    # diff-index only reads: it never refreshes or locks the index.
    dirty = git("diff-index", "--quiet", "HEAD", "--").returncode == 1
    return f"{head} + uncommitted changes" if dirty else head


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def nproc() -> str:
    found = subprocess.run(["nproc"], capture_output=True, text=True, check=False)
    return found.stdout.strip() or str(os.cpu_count())


def machine() -> str:
    return f"{nproc()} x {cpu_model()} (nproc), Python {platform.python_version()}"


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | metric | Jobgate median (min..max) | baseline median (min..max) "
        "| Jobgate vs baseline | target | result |",
        "|---|---|---:|---:|---|---|---|",
    ]
    for row in rows:
        base = row.baseline.text(row.fmt) if row.baseline else "-"
        lines.append(
            f"| {row.scenario} | {row.metric} | {row.jobgate.text(row.fmt)} | {base} "
            f"| {row.ratio} | {row.target} | **{row.verdict}** |"
        )
    return "\n".join(lines)


def section(
    rows: list[Row],
    failures: list[str],
    ctx: RunContext,
    started: datetime,
    took: float,
    commit_at_start: str,
) -> str:
    stamp = started.strftime("%Y-%m-%d %H:%M UTC")
    minutes, seconds = divmod(round(took), 60)
    at_end = commit()
    moved = ""
    if at_end != commit_at_start:
        start, end = commit_at_start.split(maxsplit=1)[0], at_end.split()[0]
        # Read-only: did anything outside bench/ change between the two?
        same = git("diff", "--quiet", start, end, "--", ".", ":(exclude)bench").returncode == 0
        moved = f" (at the end of the run: {at_end}" + (
            "; the same tree outside bench/)" if same else ")"
        )
    parts = [
        f"## {stamp} - commit {commit_at_start}{moved}",
        "",
        f"Machine: {machine()}. Load: {os.getloadavg()[0]:.2f} (1-min average at the end).",
        f"{ctx.reps} repetitions of each figure; wrk runs of {ctx.seconds} s, 50 connections, "
        f"1 thread. Total run time {minutes} min {seconds:02d} s"
        + (" (over the 15-minute budget)" if took > BUDGET_SECONDS else "")
        + f". Logs: bench/out/{ctx.run_id}/.",
        "",
        table(rows),
        "",
        "Notes:",
        "",
    ]
    parts += [f"- {row.scenario}: {row.notes}" for row in rows if row.notes]
    parts += [f"- **{failure}**" for failure in failures]
    return "\n".join(parts) + "\n"


def prune_logs(keep: int = KEEP_RUNS) -> None:
    """Keep the logs of the last ``keep`` runs in bench/out/."""
    runs = sorted(p for p in OUT.glob("2*-*") if p.is_dir())
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help=f"comma-separated subset of {SCENARIOS}")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each figure (≥ 3)")
    parser.add_argument("--seconds", type=int, default=5, help="duration of one wrk run")
    parser.add_argument("--no-write", action="store_true", help="do not append to results.md")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(SCENARIOS)
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose among {SCENARIOS}")
    if args.reps < 3:
        parser.error("every figure is a median of at least 3 repetitions: --reps ≥ 3")

    # Celery warns when a second app in one process registers the same task
    # name (the bench makes one Jobgate app per Redis it starts).
    warnings.filterwarnings("ignore", message=r"Task name .* is already registered")
    try:
        ensure_wrk()
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2

    started_at = datetime.now(UTC)
    run_id = started_at.strftime("%Y%m%d-%H%M%S")
    log_dir = OUT / run_id
    log_dir.mkdir(parents=True, exist_ok=True)
    prune_logs()
    ctx = RunContext(reps=args.reps, seconds=args.seconds, log_dir=log_dir, run_id=run_id)
    log(f"run {run_id}: {', '.join(names)}; {machine()}; logs in {log_dir}")
    commit_at_start = commit()
    started = time.monotonic()
    rows: list[Row] = []
    failures: list[str] = []
    for name in names:
        began = time.monotonic()
        log(f"scenario {name}")
        try:
            rows += scenario(name)(ctx)
        except Exception as exc:
            traceback.print_exc()
            failures.append(f"scenario {name} failed: {type(exc).__name__}: {exc}"[:500])
        log(f"scenario {name} took {time.monotonic() - began:.0f} s")
    took = time.monotonic() - started

    text = section(rows, failures, ctx, started_at, took, commit_at_start)
    print("\n" + text)
    if not args.no_write:
        existing = RESULTS.read_text() if RESULTS.exists() else HEADER
        RESULTS.write_text(existing.rstrip("\n") + "\n\n" + text)
        log(f"appended to {RESULTS.relative_to(ROOT)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
