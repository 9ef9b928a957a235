"""The watchdog: what a running job is checked for, and how it is stopped.

A job function runs in the pool process's main thread. Beside it one watchdog
thread per process (``_Watcher``) checks each running job every
``JOBGATE_WATCHDOG_INTERVAL`` seconds. A check runs these duties, in this
order, and the first that returns a ``Verdict`` decides (the rest are skipped):

1. ``TimeLimit``: past its maximum runtime the job is failed
   (``TIME_LIMIT_EXCEEDED``) and stops as ``FAILED``.
2. ``HandBack``: the worker shuts down and the grace period is over: the job
   goes back to the queue and stops as ``INITIALIZED``.
3. ``LeaseRenewal``: renews the job's lease, writes a percent the job reported
   but left unwritten, and notes the status Redis answered.
4. ``StopDetection``: any status but ``RUNNING`` in that answer (cancelled,
   timed out, failed, gone, lease lost) stops the job with that status.

The time limit and the hand-back come first because they write the job's end
themselves; the renewal and the stop detection share one round trip. If Redis
cannot be reached, the rest of the check is skipped and the job goes on.

A verdict is carried out by ``ForcedStop``, from a thread of its own so that a
stop's grace never delays the checks of other jobs: it interrupts the job
function with ``JobStopped``; if the function does not return within
``JOBGATE_CANCEL_GRACE`` seconds (it is stuck in C code, or ignores the stop)
it kills *its own* pool process, which Celery replaces. The forced stop
therefore only ever hits the job it means: it is decided and carried out
inside the process that runs that job, never by task id from outside.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from workers.config import Settings
from workers.errors import BackendUnavailable
from workers.keys import JobKeys
from workers.process import state as process_state
from workers.states import ErrorCode, Status
from workers.store import JobStore

log = logging.getLogger(__name__)

INTERRUPT_SIGNAL = signal.SIGUSR2


class JobStopped(BaseException):
    """Raised inside a job that must stop. A BaseException, so that a job's
    own ``except Exception`` cannot swallow it."""

    def __init__(self, status: str) -> None:
        super().__init__(f"job stopped: it is {status}")
        self.status = status


class JobHandle(Protocol):
    """What the watchdog needs of a running job's context (``runtime.JobContext``)."""

    keys: JobKeys
    job_id: str
    token: str

    def held_percent(self) -> int | None: ...

    def request_stop(self, status: str) -> None: ...

    def interrupt_now(self, signum: int, frame: Any) -> None: ...


@dataclass
class RunningJob:
    """One job under watch: what its duties read, and what the last check saw."""

    ctx: JobHandle
    store: JobStore
    max_runtime: int
    started: float = field(default_factory=time.monotonic)
    # The thread that runs the job function (the one the forced stop interrupts).
    thread: threading.Thread = field(default_factory=threading.current_thread)
    # Set when the job function has returned, by any means.
    finished: threading.Event = field(default_factory=threading.Event)
    # The status Redis answered to this check's lease renewal; None before it.
    seen_status: str | None = None

    @property
    def keys(self) -> JobKeys:
        return self.ctx.keys

    @property
    def token(self) -> str:
        return self.ctx.token

    @property
    def job_id(self) -> str:
        return self.ctx.job_id

    @property
    def in_main_thread(self) -> bool:
        """The job runs in the main thread: it is interrupted by a signal."""
        return self.thread is threading.main_thread()


@dataclass(frozen=True)
class Verdict:
    """A duty's decision: the job must stop, and the status it stops as."""

    status: str


class Duty(Protocol):
    """One concern of the watchdog: ``check`` returns a verdict when the job must stop."""

    def check(self, job: RunningJob) -> Verdict | None: ...


# --- the duties, in the order of a check -------------------------------------------


class TimeLimit:
    """Fails a job that ran past its maximum runtime."""

    def check(self, job: RunningJob) -> Verdict | None:
        if time.monotonic() - job.started <= job.max_runtime:
            return None
        message = f"Ran past its maximum runtime of {job.max_runtime} s"
        job.store.fail(job.keys, ErrorCode.TIME_LIMIT_EXCEEDED, message, token=job.token)
        return Verdict(Status.FAILED.value)


class HandBack:
    """Gives a running job back to the queue once the shutdown's grace is over."""

    def check(self, job: RunningJob) -> Verdict | None:
        if process_state.draining_past_deadline() and job.store.hand_back(job.keys, job.token):
            log.warning("job %s handed back to the queue: the worker shuts down", job.job_id)
            return Verdict(Status.INITIALIZED.value)
        return None


class LeaseRenewal:
    """Renews the lease (a live watchdog keeps its job's lease) and writes a
    percent the job reported but left unwritten; notes the job's status."""

    def check(self, job: RunningJob) -> Verdict | None:
        job.seen_status = job.store.report(job.keys, job.ctx.held_percent(), token=job.token)
        return None


class StopDetection:
    """Any status but RUNNING means the job must stop."""

    def check(self, job: RunningJob) -> Verdict | None:
        status = job.seen_status
        if status is None or status == Status.RUNNING.value:
            return None
        return Verdict(status)


DUTIES: tuple[Duty, ...] = (TimeLimit(), HandBack(), LeaseRenewal(), StopDetection())


def check_duties(job: RunningJob, duties: tuple[Duty, ...] = DUTIES) -> Verdict | None:
    """One check of ``job``: the first duty's verdict, or None to go on watching."""
    job.seen_status = None
    try:
        for duty in duties:
            verdict = duty.check(job)
            if verdict is not None:
                return verdict
    except BackendUnavailable as exc:
        log.warning("watchdog cannot reach Redis for job %s: %s", job.job_id, exc)
    return None


# --- carrying out a verdict --------------------------------------------------------


class ForcedStop:
    """Interrupts the job, then kills its own pool process after the grace."""

    def __init__(self, grace: float) -> None:
        self.grace = grace

    def stop(self, job: RunningJob, verdict: Verdict) -> None:
        log.info("job %s is %s: stopping it", job.job_id, verdict.status)
        job.ctx.request_stop(verdict.status)
        self.interrupt(job)
        if job.finished.wait(self.grace):
            return
        if process_state.in_pool_process:
            log.error(
                "job %s did not stop within %.1f s: killing its pool process %d",
                job.job_id,
                self.grace,
                os.getpid(),
            )
            os.kill(os.getpid(), signal.SIGKILL)
        else:
            log.error("job %s ignores its stop and cannot be killed outside a pool", job.job_id)

    @staticmethod
    def interrupt(job: RunningJob) -> None:
        ident = job.thread.ident
        if ident is None:
            return
        if job.in_main_thread:
            signal.pthread_kill(ident, INTERRUPT_SIGNAL)
        else:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(ident), ctypes.py_object(JobStopped)
            )


# --- the shared thread ---------------------------------------------------------------


class _Watcher:
    """The process's one watchdog thread, shared by every job the process runs
    (a thread started and joined per job cost a third of a short job's CPU).

    It checks each registered watchdog every ``JOBGATE_WATCHDOG_INTERVAL``; a
    job that must stop is stopped from a thread of its own, so a stop's grace
    period never delays the checks of other jobs (a threads pool).
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._dogs: dict[Watchdog, float] = {}  # watchdog -> its next check
        self._busy: set[Watchdog] = set()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._wakes_at = 0.0  # when the thread will look again by itself
        # With no job to watch, the thread still looks every watchdog interval
        # (the last job's): the next job's first check is never earlier than
        # that, so adding it needs no wake-up. (Sleeping longer made every
        # job of a busy process wake the thread: a short job is gone by the
        # time the thread runs, the thread found none and slept long again.)
        self._idle_wait = 60.0

    def add(self, dog: Watchdog) -> None:
        with self._cv:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                # (A pool process forked from a parent that had one starts its own.)
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="jobgate-watchdog", daemon=True
                )
                self._thread.start()
            at = time.monotonic() + dog.settings.watchdog_interval
            self._dogs[dog] = at
            self._idle_wait = dog.settings.watchdog_interval
            if at < self._wakes_at:  # (a wake-up per job would cost more than it saves)
                self._cv.notify_all()

    def remove(self, dog: Watchdog, timeout: float = 5.0) -> None:
        """Unregister ``dog``; returns once no check of it is in flight."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._dogs.pop(dog, None)
            while dog in self._busy and (left := deadline - time.monotonic()) > 0:
                self._cv.wait(left)

    def _run(self) -> None:
        while True:
            with self._cv:
                now = time.monotonic()
                due = [dog for dog, at in self._dogs.items() if at <= now]
                if not due:
                    self._wakes_at = min(self._dogs.values(), default=now + self._idle_wait)
                    self._cv.wait(max(0.001, self._wakes_at - now))
                    continue
                for dog in due:
                    del self._dogs[dog]
                self._busy.update(due)
            for dog in due:
                again = dog.check_once()
                with self._cv:
                    self._busy.discard(dog)
                    if again and not dog.finished.is_set():
                        self._dogs[dog] = time.monotonic() + dog.settings.watchdog_interval
                    self._cv.notify_all()


_watcher = _Watcher()


class Watchdog:
    """Watches one job while it runs (a context manager around the job function)."""

    def __init__(
        self, ctx: JobHandle, store: JobStore, settings: Settings, max_runtime: int
    ) -> None:
        self.settings = settings
        self.job = RunningJob(ctx, store, max_runtime)
        self.finished = self.job.finished
        self.forced_stop = ForcedStop(settings.cancel_grace)
        self._stopper: threading.Thread | None = None
        self._old_handler: Any = None

    def __enter__(self) -> Watchdog:
        if self.job.in_main_thread:
            self._old_handler = signal.signal(INTERRUPT_SIGNAL, self.job.ctx.interrupt_now)
        _watcher.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.finished.set()
        _watcher.remove(self)
        if self._stopper is not None:
            self._stopper.join(timeout=5)
        if self.job.in_main_thread:
            signal.signal(INTERRUPT_SIGNAL, self._old_handler or signal.SIG_DFL)

    def check_once(self) -> bool:
        """One check (from the shared thread); False once the job must stop."""
        if self.finished.is_set():
            return False
        verdict = check_duties(self.job)
        if verdict is None:
            return True
        self._stopper = threading.Thread(
            target=self.forced_stop.stop, args=(self.job, verdict), name="jobgate-stop", daemon=True
        )
        self._stopper.start()
        return False
