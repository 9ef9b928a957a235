"""``make soak``: 10,000 jobs through worker SIGKILLs and Redis restarts.

Everything is real and started here: a redis-server with ``appendfsync
always`` on a free port, two ``jobgate worker`` processes (job workers), one
``jobgate worker --sweep-only``, ``jobgate beat``, and the API in this process
(Flask's test client, so the API costs no extra process). Jobs are submitted
at a steady rate while 13 faults are spread over the run:

- 5 SIGKILLs of a pool process running a job (what the OOM killer does),
- 5 SIGKILLs of a whole job worker (main process and pool), restarted 1 s later
  under a new name (what a supervisor does),
- 3 Redis restarts: SIGTERM, SIGKILL, SIGTERM (AOF: nothing acknowledged is lost).

Then, once every job has ended, it checks: no job lost (every accepted job has
a record), every job terminal, no duplicate execution (one execution ended
DONE, attempts in order and never overlapping, from the records' ``run:<n>``),
no Jobgate key without a TTL, and no worker main process that ended without
being killed. It prints the figures: duration, recovery time of each fault,
messages published per job and resends. It exits 1 with ``SOAK FAILED: ...``
lines when a check fails.

Environment: SOAK_JOBS (10000), SOAK_RATE (12 submits/s), SOAK_CONCURRENCY (4
per job worker), SOAK_BUDGET (1200 s: the run fails past it). Logs go to
bench/out/soak-<time>/ (git-ignored).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from app import create_app
from bench.common import OUT
from jobgate.redis_server import RedisServer
from tests.integration.conftest import make_test_settings
from tests.support.harness import Process, children, start_beat, start_jobgate_worker, wait_until
from tests.support.load import Submitter, all_ended, unfinished, verdict
from workers.config import Settings
from workers.errors import BackendUnavailable
from workers.keys import PREFIX, JobKeys
from workers.queues import control_queue
from workers.store import JobStore

FAULTS = (
    "pool", "worker", "redis-SIGTERM", "pool", "worker", "pool", "redis-SIGKILL",
    "worker", "pool", "worker", "redis-SIGTERM", "pool", "worker",
)  # fmt: skip
# A task id is the job's, <tenant>:<id>, the same for every message of a job.
RECEIVED = re.compile(r"Task jobgate\.run\[([^\]]+)\] received")
SWEEP_RESENT = re.compile(r"sweep: resent (\d+) requeued")
SWEEP_LOST = re.compile(r"sweep: (\d+) queued job\(s\) whose message was lost")


@dataclass
class Fault:
    kind: str
    at_s: float
    victims: int
    recovery_s: float | None = None


class Soak:
    def __init__(self, jobs: int, rate: float, concurrency: int, budget: float) -> None:
        self.total, self.rate, self.budget = jobs, rate, budget
        self.log_dir = OUT / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        self.log_dir.mkdir(parents=True)
        self.redis = RedisServer(None, "--appendonly", "yes", "--appendfsync", "always").start()
        self.settings: Settings = make_test_settings(
            self.redis.url,
            queue=f"soak-{uuid.uuid4().hex[:6]}",
            lease_ttl=2.0,
            sweep_interval=0.5,
            redis_timeout=0.5,
            worker_concurrency=concurrency,
            tenant_max_active=jobs + 1000,
        )
        self.store = JobStore.from_settings(self.settings)
        # 0.5 s jobs: long enough for a kill to find them running.
        self.load = Submitter(create_app(self.settings), rate, jobs, n=10, delay=0.05)
        self.processes: list[Process] = []
        self.job_workers: list[Process] = []
        self.killed: set[int] = set()
        self.faults: list[Fault] = []
        self.waiting: list[threading.Thread] = []
        self.failures: list[str] = []
        self.started = time.monotonic()

    # -- processes ---------------------------------------------------------------

    def start_worker(self, name: str, *, sweep_only: bool = False) -> Process:
        worker = start_jobgate_worker(
            self.settings, self.store, self.log_dir, name, sweep_only=sweep_only
        )
        self.processes.append(worker)
        if not sweep_only:
            self.job_workers.append(worker)
        return worker

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()
        self.redis.close()

    # -- faults ------------------------------------------------------------------

    def busy(self, workers: list[Process]) -> int:
        """Wait (up to 30 s) until the pool processes of ``workers`` run jobs; how many do."""
        pids = {str(p) for w in workers for p in children(w.popen.pid)}
        found = 0

        def running() -> bool:
            nonlocal found
            with contextlib.suppress(redis.RedisError):
                found = len(pids & {pid for pid, _ in self.open_runs()})
            return found > 0

        with contextlib.suppress(AssertionError):
            wait_until(running, 30, "jobs running", step=0.05)
        return found

    def open_runs(self) -> list[tuple[str, JobKeys]]:
        """(pool pid, job) of every execution still open among the last 1,000 jobs."""
        return [(pid, job) for job, runs in self.runs_of(self.recent()).items()
                for pid, outcome in runs if outcome is None]  # fmt: skip

    def recent(self) -> list[JobKeys]:
        return self.load.jobs[-1000:]

    def runs_of(self, jobs: list[JobKeys]) -> dict[JobKeys, list[tuple[str, str | None]]]:
        """Each job's executions as (pool pid, outcome or None while open), one round trip."""
        pipe = self.store.redis.pipeline(transaction=False)
        for job in jobs:
            pipe.hgetall(job.record)
        found: dict[JobKeys, list[tuple[str, str | None]]] = {}
        for job, raw in zip(jobs, pipe.execute(), strict=True):
            runs = []
            for field, value in raw.items():
                if field.startswith("run:") and not field.endswith(":w"):
                    parts = value.split(" ")
                    pid = raw.get(f"{field}:w", "").rsplit(":", 1)[-1]
                    runs.append((pid, parts[2] if len(parts) == 3 else None))
            found[job] = runs
        return found

    def settle(self, jobs: list[JobKeys], what: str) -> bool:
        try:
            wait_until(lambda: all_ended(self.store, jobs), 300, what, step=0.2)
        except AssertionError as exc:
            self.failures.append(str(exc))
            return False
        return True

    def recovered(self, fault: Fault, pids: set[int], candidates: list[JobKeys]) -> Fault:
        """The jobs the kill hit (an execution by ``pids``, ended ``lost``), until they end."""
        killed = {str(p) for p in pids}
        hit: list[JobKeys] = []

        def closed() -> bool:
            hit.clear()
            try:
                runs = self.runs_of(candidates)
            except redis.RedisError:
                return False
            for job, executions in runs.items():
                mine = [outcome for pid, outcome in executions if pid in killed]
                if None in mine:
                    return False  # the lease has not lapsed yet
                if "lost" in mine:
                    hit.append(job)
            return True

        at = fault.at_s + self.started
        try:
            wait_until(closed, 120, f"the executions killed by {fault.kind} to be settled", 0.2)
        except AssertionError as exc:
            self.failures.append(str(exc))
            return fault
        fault.victims = len(hit)
        if hit and self.settle(hit, f"the jobs hit by {fault.kind} to end"):
            fault.recovery_s = time.monotonic() - at
        return fault

    def kill_pool_process(self, index: int) -> Fault:
        worker = self.job_workers[index % len(self.job_workers)]
        self.busy([worker])
        running = {pid for pid, _ in self.open_runs()}
        pool = children(worker.popen.pid)
        pid = next((p for p in pool if str(p) in running), pool[0])
        candidates = self.recent()
        at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        fault = Fault("pool process SIGKILL", at - self.started, 0)
        return self.track(fault, lambda: self.recovered(fault, {pid}, candidates))

    def kill_worker(self, index: int) -> Fault:
        position = index % len(self.job_workers)
        worker = self.job_workers[position]
        self.busy([worker])
        pids = {worker.popen.pid, *children(worker.popen.pid)}
        candidates = self.recent()
        at = time.monotonic()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        worker.popen.wait()
        self.killed.add(worker.popen.pid)
        time.sleep(1.0)  # a supervisor's restart delay
        self.job_workers.remove(worker)
        self.start_worker(f"soak-{uuid.uuid4().hex[:4]}")  # joins job_workers
        fault = Fault("worker SIGKILL", at - self.started, 0)
        return self.track(fault, lambda: self.recovered(fault, pids, candidates))

    def restart_redis(self, how: str) -> Fault:
        """Restart Redis with jobs running (acks in flight); recovery: every job
        worker has reconnected and taken a new message."""
        in_flight = self.busy(self.job_workers)
        offsets = {w: len(w.output()) for w in self.job_workers}
        at = time.monotonic()
        if how == "SIGKILL":
            self.redis.kill()
        else:
            self.redis.stop()
        self.redis.start()
        back = time.monotonic()
        fault = Fault(f"Redis {how}", at - self.started, in_flight)

        def consuming() -> bool:
            for worker, offset in offsets.items():
                if worker.popen.pid in self.killed:
                    continue  # killed since: the restart is not what stopped it
                after = worker.output()[offset:]
                reconnected = after.rfind("Connected to redis://")
                if reconnected < 0 or not RECEIVED.search(after, reconnected):
                    return False
            return True

        def recovered() -> None:
            try:
                wait_until(consuming, 120, "every job worker to take a message after the restart")
            except AssertionError as exc:
                self.failures.append(f"{fault.kind} at {fault.at_s:.0f} s: {exc}")
                return
            fault.recovery_s = time.monotonic() - back

        return self.track(fault, recovered)

    def track(self, fault: Fault, wait: Callable[[], object]) -> Fault:
        """Measure the recovery in a thread: the next fault comes on schedule, under load."""

        def measure() -> None:
            wait()
            shown = "-" if fault.recovery_s is None else f"{fault.recovery_s:.1f} s"
            print(f"  {fault.at_s:7.1f} s  {fault.kind:22} hit={fault.victims}  "
                  f"recovered in {shown}", flush=True)  # fmt: skip

        thread = threading.Thread(target=measure, daemon=True)
        thread.start()
        self.waiting.append(thread)
        return fault

    def inject(self) -> None:
        load = self.load
        kinds = Counter[str]()
        for number, kind in enumerate(FAULTS, start=1):
            due = self.total * number // (len(FAULTS) + 1)
            while len(load.jobs) < due and load.is_alive():
                time.sleep(0.2)
            try:
                fault = self.inject_one(kind, kinds[kind])
            except Exception as exc:  # reported as a failed check
                self.failures.append(f"fault {number} ({kind}) could not be injected: {exc!r}")
                continue
            kinds[kind] += 1
            self.faults.append(fault)

    def inject_one(self, kind: str, index: int) -> Fault:
        """One fault. Choosing a target reads Redis, which may be busy for a
        moment (just restarted, or a loaded machine): asked again for 30 s."""
        deadline = time.monotonic() + 30
        while True:
            try:
                if kind == "pool":
                    return self.kill_pool_process(index)
                if kind == "worker":
                    return self.kill_worker(index)
                return self.restart_redis(kind.split("-")[1])
            except BackendUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    # -- the run -----------------------------------------------------------------

    def run(self) -> int:
        print(
            f"soak: {self.total} jobs at {self.rate}/s, {len(FAULTS)} faults, logs {self.log_dir}"
        )
        self.processes.append(start_beat(self.settings, self.log_dir, "soak-beat"))
        self.start_worker("soak-sweep", sweep_only=True)
        self.start_worker("soak-a")
        self.start_worker("soak-b")
        self.started = time.monotonic()
        load = self.load
        load.start()
        injector = threading.Thread(target=self.inject, daemon=True)
        injector.start()
        load.join(self.budget)
        injector.join(max(1.0, self.budget - (time.monotonic() - self.started)))
        for thread in self.waiting:
            thread.join(max(1.0, self.budget - (time.monotonic() - self.started)))
        submitted_s = (load.finished_at or time.monotonic()) - self.started
        left = self.budget - submitted_s
        try:
            wait_until(
                lambda: all_ended(self.store, load.jobs), max(left, 1), "every job to end", 1
            )
        except AssertionError:
            stuck = unfinished(self.store, load.jobs)
            self.failures.append(f"{len(stuck)} jobs not terminal after {self.budget} s")
        duration = time.monotonic() - self.started
        self.report(load, submitted_s, duration)
        for failure in self.failures:
            print(f"SOAK FAILED: {failure}")
        print("soak: PASSED" if not self.failures else "soak: FAILED")
        return 1 if self.failures else 0

    def messages(self, jobs: list[JobKeys]) -> tuple[int, int, int, int, int]:
        """Messages published (the records' own count, ``msgs``), deliveries
        (the workers' "received" lines, redeliveries of one message included),
        messages left queued or unacked, and the sweep's counts."""
        deliveries = resent = lost = 0
        for process in self.processes:
            text = process.output()
            deliveries += len(RECEIVED.findall(text))
            resent += sum(int(n) for n in SWEEP_RESENT.findall(text))
            lost += sum(int(n) for n in SWEEP_LOST.findall(text))
        raw = redis.Redis.from_url(self.redis.url)
        pipe = raw.pipeline(transaction=False)
        for job in jobs:
            pipe.hget(job.record, "msgs")
        published = sum(int(msgs or 0) for msgs in pipe.execute())
        control = control_queue(self.settings).encode()
        keys = [k for k in raw.scan_iter(f"{self.settings.queue}*") if not k.startswith(control)]
        queued = sum(int(raw.llen(key)) for key in keys)
        queued += int(raw.hlen("unacked"))
        return published, deliveries, queued, resent, lost

    def report(self, load: Submitter, submitted_s: float, duration: float) -> None:
        jobs = load.jobs
        if len(jobs) < self.total:
            self.failures.append(f"only {len(jobs)} of {self.total} jobs accepted in time")
        result = verdict(self.store, jobs)
        if result.missing:
            self.failures.append(f"{len(result.missing)} jobs lost: {result.missing[:5]}")
        if result.not_terminal:
            self.failures.append(
                f"{len(result.not_terminal)} not terminal: {result.not_terminal[:5]}"
            )
        if result.duplicates:
            self.failures.append(
                f"{len(result.duplicates)} duplicate executions: {result.duplicates[:5]}"
            )
        raw = redis.Redis.from_url(self.redis.url, decode_responses=True)
        no_ttl = [k for k in raw.scan_iter(match=f"{PREFIX}*", count=1000) if raw.ttl(k) == -1]
        if no_ttl:
            self.failures.append(f"{len(no_ttl)} keys without TTL: {no_ttl[:5]}")
        died = [p.name for p in self.processes if not p.alive() and p.popen.pid not in self.killed]
        if died:
            self.failures.append(f"processes ended by themselves: {died}")
        if len(self.faults) < len(FAULTS):
            self.failures.append(f"only {len(self.faults)} of {len(FAULTS)} faults injected")

        published, deliveries, queued, resent, lost = self.messages(jobs)
        print(f"\nsoak figures ({len(jobs)} jobs, {len(self.faults)} faults)")
        print(f"  duration            {duration:.0f} s (submits over {submitted_s:.0f} s, "
              f"{len(jobs) / submitted_s:.1f}/s; refused {dict(load.refused)})")  # fmt: skip
        for kind in sorted({f.kind for f in self.faults}):
            times = [f.recovery_s for f in self.faults if f.kind == kind and f.recovery_s]
            if times:
                print(f"  recovery {kind:22} max {max(times):.1f} s, "
                      f"median {statistics.median(times):.1f} s over {len(times)}")  # fmt: skip
        print(f"  lost {len(result.missing)}, not terminal {len(result.not_terminal)}, "
              f"duplicate executions {len(result.duplicates)}, FAILED {len(result.failed)}, "
              f"keys without TTL {len(no_ttl)}")  # fmt: skip
        print(f"  attempts            {dict(sorted(result.attempts.items()))}")
        print(f"  execution outcomes  {dict(result.outcomes)}")
        per_job = published / len(jobs) if jobs else 0.0
        print(f"  messages            {published} for {len(jobs)} jobs = {per_job:.2f} per job "
              f"({deliveries} 'received' lines in the worker logs, "
              f"{queued} left queued or unacked)")  # fmt: skip
        print(f"  resends             {published - len(jobs)} messages beyond one per job; "
              f"the sweep resent {resent} requeued job(s), flagged {lost} lost")  # fmt: skip
        if result.failed:
            print(f"  FAILED jobs         {result.failed[:5]}")


def main() -> int:
    soak = Soak(
        jobs=int(os.environ.get("SOAK_JOBS", "10000")),
        rate=float(os.environ.get("SOAK_RATE", "12")),
        concurrency=int(os.environ.get("SOAK_CONCURRENCY", "4")),
        budget=float(os.environ.get("SOAK_BUDGET", "1200")),
    )
    try:
        return soak.run()
    finally:
        soak.stop_all()


if __name__ == "__main__":
    sys.exit(main())
