"""Steady submits from a thread, and the checks every fault run makes at its end.

Used by tests/integration/test_redis_restarts.py and bench/soak.py (``make soak``).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Flask

from workers.keys import JobKeys
from workers.store import JobRecord, JobStore

TENANT = "default"  # auth is off in the fault runs
TERMINAL = ("DONE", "FAILED")


class Submitter(threading.Thread):
    """POST /v1/jobs at ``rate`` per second until ``limit`` are accepted or ``stop()``.

    A refusal (503 while Redis restarts) is counted and the same submit is tried
    again at the next tick: the run gets its ``limit`` jobs whatever the faults.
    """

    def __init__(self, app: Flask, rate: float, limit: int | None = None, **params: Any) -> None:
        super().__init__(name="submitter", daemon=True)
        self.client = app.test_client()
        self.rate, self.limit = rate, limit
        self.body = {
            "type": "demo.count",
            "params": params or {"n": 1},
            "wait": 0,
            "poll_timeout": 0,
            "retention": 3600,
        }
        self.jobs: list[JobKeys] = []
        self.refused: Counter[int] = Counter()
        self._halt = threading.Event()
        self.finished_at: float | None = None  # time.monotonic() of the last submit

    def run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._halt.is_set() and (self.limit is None or len(self.jobs) < self.limit):
            response = self.client.post("/v1/jobs", json=self.body)
            if response.status_code == 202:
                self.jobs.append(JobKeys(TENANT, response.get_json()["id"]))
            else:
                self.refused[response.status_code] += 1
            next_at = max(next_at + interval, time.monotonic() - 1.0)
            self._halt.wait(max(0.0, next_at - time.monotonic()))
        self.finished_at = time.monotonic()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def statuses(store: JobStore, jobs: list[JobKeys]) -> list[str | None]:
    """Each job's status, in one round trip per 1,000 jobs (None: no record)."""
    found: list[str | None] = []
    for start in range(0, len(jobs), 1000):
        pipe = store.redis.pipeline(transaction=False)
        for job in jobs[start : start + 1000]:
            pipe.hget(job.record, "status")
        found += pipe.execute()
    return found


def unfinished(store: JobStore, jobs: list[JobKeys]) -> list[JobKeys]:
    return [job for job, s in zip(jobs, statuses(store, jobs), strict=True) if s not in TERMINAL]


def all_ended(store: JobStore, jobs: list[JobKeys]) -> bool:
    """For ``wait_until``: False while Redis does not answer (it may be restarting)."""
    try:
        return not unfinished(store, jobs)
    except redis.RedisError:
        return False


def any_running(store: JobStore, jobs: list[JobKeys]) -> bool:
    """For ``wait_until``: False while Redis does not answer."""
    try:
        return "RUNNING" in statuses(store, jobs)
    except redis.RedisError:
        return False


def execution_problems(record: JobRecord) -> list[str]:
    """What is wrong with one finished job's executions (empty: nothing)."""
    runs = record.runs
    problems = []
    if [r.attempt for r in runs] != list(range(1, len(runs) + 1)):
        problems.append(f"attempts {[r.attempt for r in runs]}")
    done = [r for r in runs if r.outcome == "DONE"]
    if record.status.value == "DONE" and len(done) != 1:
        problems.append(f"{len(done)} executions ended DONE")
    for earlier, later in itertools.pairwise(runs):
        if earlier.ended_ms is None or earlier.ended_ms > later.started_ms:
            problems.append(f"attempt {later.attempt} started before {earlier.attempt} ended")
    return problems


@dataclass
class Verdict:
    """The end-of-run checks: each list holds what failed."""

    jobs: int
    missing: list[str] = field(default_factory=list)
    not_terminal: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    attempts: Counter[int] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.not_terminal or self.duplicates)


def verdict(store: JobStore, jobs: list[JobKeys]) -> Verdict:
    """Read every job once: lost, not terminal, duplicate executions, outcomes."""
    result = Verdict(jobs=len(jobs))
    for job, status in zip(jobs, statuses(store, jobs), strict=True):
        if status is None:
            result.missing.append(job.job_id)
            continue
        record = store.read(job, poll=False)
        result.attempts[record.attempt] += 1
        for run in record.runs:
            result.outcomes[run.outcome or "running"] += 1
        if status not in TERMINAL:
            result.not_terminal.append(f"{job.job_id} {status}")
        elif status == "FAILED":
            result.failed.append(f"{job.job_id} {record.error}")
        problems = execution_problems(record)
        if problems:
            result.duplicates.append(f"{job.job_id}: {'; '.join(problems)}")
    return result
