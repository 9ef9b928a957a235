"""workers/watchdog.py: each duty of a check, their order, and the forced stop.

The duties run against real Lua on fakeredis; the forced stop against a job
running in the main thread, as in a pool process. Time is not waited for: a
job "past its limit" is one whose start lies further back than its limit, a
shutdown "past its grace" one whose grace was zero.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.unit.helpers import MakeJob, assert_ttl_close
from workers import watchdog
from workers.errors import BackendUnavailable
from workers.keys import JobKeys
from workers.process import ProcessState
from workers.runtime import JobContext
from workers.states import ErrorCode, Status
from workers.store import CancelOutcome, JobStore
from workers.watchdog import (
    INTERRUPT_SIGNAL,
    Duty,
    ForcedStop,
    HandBack,
    JobStopped,
    LeaseRenewal,
    RunningJob,
    StopDetection,
    TimeLimit,
    Verdict,
    check_duties,
)

LIMIT = 100


@pytest.fixture
def process_state(monkeypatch: pytest.MonkeyPatch) -> ProcessState:
    """A process of its own for each test: not shutting down, not a pool process."""
    fresh = ProcessState()
    monkeypatch.setattr(watchdog, "process_state", fresh)
    return fresh


@pytest.fixture
def running(store: JobStore, make_job: MakeJob) -> RunningJob:
    """A RUNNING job under its worker's lease, just started."""
    keys = make_job()
    started = store.start(keys, "node:1")
    assert started.run
    ctx = JobContext(store, keys, started.attempt, started.token)
    return RunningJob(ctx, store, LIMIT)


def status_of(store: JobStore, keys: JobKeys) -> Status:
    return store.read(keys, poll=False).status


# --- TimeLimit ---------------------------------------------------------------------


def test_a_job_past_its_time_limit_is_failed_as_time_limit_exceeded(
    store: JobStore, running: RunningJob
) -> None:
    running.started = time.monotonic() - LIMIT - 1

    verdict = TimeLimit().check(running)

    assert verdict == Verdict(Status.FAILED.value)
    record = store.read(running.keys, poll=False)
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error["code"] == ErrorCode.TIME_LIMIT_EXCEEDED.value


def test_a_job_within_its_time_limit_is_left_running(store: JobStore, running: RunningJob) -> None:
    verdict = TimeLimit().check(running)

    assert verdict is None
    assert status_of(store, running.keys) is Status.RUNNING


# --- HandBack ----------------------------------------------------------------------


def test_a_job_is_handed_back_once_the_shutdown_grace_is_over(
    store: JobStore, running: RunningJob, process_state: ProcessState
) -> None:
    process_state.begin_drain(0.0)

    verdict = HandBack().check(running)

    assert verdict == Verdict(Status.INITIALIZED.value)
    assert status_of(store, running.keys) is Status.INITIALIZED


def test_a_job_keeps_running_while_the_shutdown_grace_lasts(
    store: JobStore, running: RunningJob, process_state: ProcessState
) -> None:
    process_state.begin_drain(3600.0)

    verdict = HandBack().check(running)

    assert verdict is None
    assert status_of(store, running.keys) is Status.RUNNING


def test_a_job_is_not_handed_back_while_the_worker_is_not_shutting_down(
    store: JobStore, running: RunningJob, process_state: ProcessState
) -> None:
    verdict = HandBack().check(running)

    assert verdict is None
    assert status_of(store, running.keys) is Status.RUNNING


# --- LeaseRenewal ------------------------------------------------------------------


class HeldPercent(JobContext):
    """A job context that holds back a percent of 42, unwritten."""

    def held_percent(self) -> int | None:
        return 42


def test_the_renewal_renews_the_lease_and_notes_the_status(
    store: JobStore, client: Any, running: RunningJob
) -> None:
    client.pexpire(running.keys.lease, 1000)

    verdict = LeaseRenewal().check(running)

    assert verdict is None
    assert running.seen_status == Status.RUNNING.value
    assert_ttl_close(client, running.keys.lease, int(store.settings.lease_ttl * 1000))


def test_the_renewal_writes_a_percent_the_job_left_unwritten(
    store: JobStore, running: RunningJob
) -> None:
    ctx = running.ctx
    running.ctx = HeldPercent(store, ctx.keys, token=ctx.token)

    LeaseRenewal().check(running)

    assert store.read(running.keys, poll=False).progress == 42


# --- StopDetection -----------------------------------------------------------------


@pytest.mark.parametrize("status", ["FAILED", "DONE", "INITIALIZED", "LEASE_LOST", "gone"])
def test_any_status_but_running_stops_the_job(running: RunningJob, status: str) -> None:
    running.seen_status = status

    verdict = StopDetection().check(running)

    assert verdict == Verdict(status)


@pytest.mark.parametrize("seen", [Status.RUNNING.value, None])
def test_a_running_job_or_one_not_looked_at_goes_on(running: RunningJob, seen: str | None) -> None:
    running.seen_status = seen

    verdict = StopDetection().check(running)

    assert verdict is None


# --- a whole check -----------------------------------------------------------------


def test_a_cancelled_job_is_stopped_with_its_status(store: JobStore, running: RunningJob) -> None:
    assert store.cancel(running.keys) is CancelOutcome.CANCELLED

    verdict = check_duties(running)

    assert verdict == Verdict(Status.FAILED.value)


def test_a_running_job_passes_a_check(store: JobStore, running: RunningJob) -> None:
    verdict = check_duties(running)

    assert verdict is None
    assert status_of(store, running.keys) is Status.RUNNING


def test_the_time_limit_is_checked_before_the_hand_back(
    store: JobStore, running: RunningJob, process_state: ProcessState
) -> None:
    running.started = time.monotonic() - LIMIT - 1
    process_state.begin_drain(0.0)

    verdict = check_duties(running)

    assert verdict == Verdict(Status.FAILED.value)
    record = store.read(running.keys, poll=False)
    assert record.error is not None
    assert record.error["code"] == ErrorCode.TIME_LIMIT_EXCEEDED.value


class Unreachable:
    def check(self, job: RunningJob) -> Verdict | None:
        raise BackendUnavailable("Redis is away")


class Recorder:
    def __init__(self) -> None:
        self.checked = 0

    def check(self, job: RunningJob) -> Verdict | None:
        self.checked += 1
        return Verdict("FAILED")


def test_redis_out_of_reach_skips_the_rest_of_the_check_and_the_job_goes_on(
    running: RunningJob,
) -> None:
    later = Recorder()
    duties: tuple[Duty, ...] = (Unreachable(), later)

    verdict = check_duties(running, duties)

    assert verdict is None
    assert later.checked == 0


def test_the_first_verdict_decides_and_later_duties_are_skipped(running: RunningJob) -> None:
    first, second = Recorder(), Recorder()

    verdict = check_duties(running, (first, second))

    assert verdict == Verdict("FAILED")
    assert (first.checked, second.checked) == (1, 0)


# --- ForcedStop --------------------------------------------------------------------


@pytest.fixture
def kills(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """os.kill as the forced stop calls it, recorded instead of done."""
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: calls.append((pid, sig)))
    return calls


class Stopping:
    """The forced stop of a job, from a thread of its own once the job runs."""

    def __init__(self, running: RunningJob, grace: float) -> None:
        self.job_runs = threading.Event()
        self.done = threading.Event()  # the forced stop has returned
        self.stopper = threading.Thread(target=self._stop, args=(running, grace), daemon=True)

    def _stop(self, running: RunningJob, grace: float) -> None:
        try:
            if self.job_runs.wait(timeout=30):
                ForcedStop(grace).stop(running, Verdict("FAILED"))
        finally:
            self.done.set()

    def job(self, swallow_stops: bool, until: threading.Event) -> None:
        """A job function: sleeps in short steps until ``until`` (at most 30 s).

        A stop may land anywhere in the loop (a signal is handled between any
        two bytecodes), so the swallowing is around the whole loop; the
        interrupt comes once, so one swallow is enough.
        """
        deadline = time.monotonic() + 30
        try:
            self._sleep_until(until, deadline)
        except JobStopped:
            if not swallow_stops:
                raise
            self._sleep_until(until, deadline)

    def _sleep_until(self, until: threading.Event, deadline: float) -> None:
        self.job_runs.set()
        while not until.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)


@contextmanager
def stopping(running: RunningJob, grace: float) -> Iterator[Stopping]:
    """The job runs in the main thread (as in a pool process), interruptible."""
    ctx = running.ctx
    assert isinstance(ctx, JobContext)
    old_handler = signal.signal(INTERRUPT_SIGNAL, ctx.interrupt_now)
    stop = Stopping(running, grace)
    stop.stopper.start()
    try:
        with ctx.running_job_code():
            yield stop
    finally:
        running.finished.set()
        stop.stopper.join(timeout=30)
        signal.signal(INTERRUPT_SIGNAL, old_handler)


def test_a_job_that_heeds_its_stop_is_interrupted_and_not_killed(
    running: RunningJob, kills: list[tuple[int, int]]
) -> None:
    with pytest.raises(JobStopped) as stopped, stopping(running, grace=30) as stop:
        stop.job(swallow_stops=False, until=threading.Event())

    assert stopped.value.status == "FAILED"
    assert kills == []


def test_a_job_that_ignores_its_stop_kills_its_own_pool_process_after_the_grace(
    running: RunningJob, kills: list[tuple[int, int]], process_state: ProcessState
) -> None:
    process_state.in_pool_process = True

    with stopping(running, grace=1.0) as stop:
        stop.job(swallow_stops=True, until=stop.done)

    assert kills == [(os.getpid(), signal.SIGKILL)]


def test_a_job_that_ignores_its_stop_outside_a_pool_is_not_killed(
    running: RunningJob,
    kills: list[tuple[int, int]],
    process_state: ProcessState,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with stopping(running, grace=1.0) as stop:
        stop.job(swallow_stops=True, until=stop.done)

    assert kills == []
    assert "cannot be killed outside a pool" in caplog.text
