"""The task wrapper: start, progress, the watchdog, and the end of a job.

A job function runs in the pool process's main thread. Beside it a watchdog
thread checks the job's record in Redis every ``JOBGATE_WATCHDOG_INTERVAL``
seconds and enforces the job type's time limit. When the job must stop
(cancelled, timed out, over its time limit) the watchdog interrupts the job
function with ``JobStopped``; if the function does not return within
``JOBGATE_CANCEL_GRACE`` seconds (it is stuck in C code, or ignores the stop)
the watchdog kills *its own* pool process, which Celery replaces. The forced
stop therefore only ever hits the job it means: it is decided and carried out
inside the process that runs that job, never by task id from outside.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import orjson
from marshmallow import ValidationError

from workers import registry
from workers.config import Settings
from workers.errors import BackendUnavailable
from workers.keys import JobKeys
from workers.states import ErrorCode, Status
from workers.store import JobStore, dumps

log = logging.getLogger(__name__)
R = TypeVar("R")

# At most one progress write per this many seconds, unless the percent changed;
# a changed percent waits at most PROGRESS_CHANGE_INTERVAL (or, if the job
# makes no further call, until its watchdog's next check writes it).
PROGRESS_MIN_INTERVAL = 0.1
PROGRESS_CHANGE_INTERVAL = 0.01
# Partial rows buffered beyond this many are written at the next call.
PUBLISH_FLUSH_ROWS = 5_000
INTERRUPT_SIGNAL = signal.SIGUSR2

# Set in Celery's pool processes (worker_process_init): only there may the
# watchdog kill its own process, since the pool replaces it.
state: dict[str, Any] = {"in_pool_process": False, "node": ""}
# When the worker shuts down: the monotonic time (one clock for every process
# of the machine) by which running jobs must have ended, else they are handed
# back to the queue; 0 while not shutting down. Shared memory made before the
# pool forks, so the main process's warm shutdown reaches every pool process
# without a signal.
_shutdown_at = multiprocessing.RawValue("d", 0.0)


def begin_drain(grace: float) -> None:
    """The worker is shutting down: running jobs have ``grace`` seconds."""
    if _shutdown_at.value == 0.0:
        _shutdown_at.value = time.monotonic() + grace


def draining() -> bool:
    return float(_shutdown_at.value) != 0.0


def draining_past_deadline() -> bool:
    return draining() and time.monotonic() >= float(_shutdown_at.value)


def running_job() -> bool:
    return bool(state.get("running"))


class JobStopped(BaseException):
    """Raised inside a job that must stop. A BaseException, so that a job's
    own ``except Exception`` cannot swallow it."""

    def __init__(self, status: str) -> None:
        super().__init__(f"job stopped: it is {status}")
        self.status = status


class JobContext:
    """What a job function receives as ``ctx``."""

    # Slots: progress() runs in jobs' innermost loops; attribute reads count.
    __slots__ = (
        "_current",
        "_interruptible",
        "_last_asked",
        "_last_percent",
        "_last_write",
        "_pending_message",
        "_pending_rows",
        "_stop_status",
        "_store",
        "attempt",
        "job_id",
        "keys",
        "token",
        "writes",
    )

    def __init__(self, store: JobStore, keys: JobKeys, attempt: int = 1, token: str = "") -> None:
        self._store = store
        self.keys = keys
        self.job_id = keys.job_id
        self.attempt = attempt
        self.token = token
        self._last_percent = -1  # the last percent written
        self._current = 0  # the last percent asked, clamped
        self._last_asked: object = None  # the last percent as the job passed it
        self._last_write = 0.0
        self._pending_message = ""
        self._pending_rows: list[Any] = []
        self._stop_status: str | None = None
        self._interruptible = False
        self.writes = 0

    # -- the job's API ------------------------------------------------------

    def progress(self, percent: float, message: str = "") -> None:
        """Report integer percent progress; raises ``JobStopped`` if the job
        was cancelled or timed out. Throttled: a changed percent is written
        within 10 ms, anything else at most every 100 ms; what the job leaves
        unwritten, its watchdog writes at its next check.

        Called in a job's innermost loop, so the common case (nothing to write)
        does as little as Python allows.
        """
        if self._stop_status is not None:
            raise JobStopped(self._stop_status)
        if message:
            self._pending_message = message
        if percent != self._last_asked:
            self._last_asked = percent
            self._current = max(0, min(100, int(percent)))
        now = time.monotonic()
        since = now - self._last_write
        if (
            since >= PROGRESS_MIN_INTERVAL
            or (since >= PROGRESS_CHANGE_INTERVAL and self._current != self._last_percent)
            or len(self._pending_rows) >= PUBLISH_FLUSH_ROWS
        ):
            self._write(self._current, now)

    def held_percent(self) -> int | None:
        """A percent the job reported that is not written yet (for the watchdog)."""
        current = self._current
        return current if current != self._last_percent and self._last_asked is not None else None

    def check(self) -> None:
        """Raise ``JobStopped`` if the job must stop (one Redis round trip at
        most per 100 ms)."""
        self._raise_if_stopped()
        now = time.monotonic()
        if now - self._last_write >= PROGRESS_MIN_INTERVAL:
            self._write(None, now)

    def publish(self, rows: Iterable[Any]) -> None:
        """Append rows (JSON values) to the partial result; they are written,
        all at once, with the next progress write. A row JSON cannot hold
        fails the job there (``TypeError``)."""
        self._pending_rows.extend(rows)

    # -- the runtime's side -------------------------------------------------

    def _write(self, percent: int | None, now: float) -> None:
        # The partial result is stored as lines, each a JSON array of the rows
        # of one write: one orjson call for the whole batch.
        rows = orjson.dumps(self._pending_rows) + b"\n" if self._pending_rows else ""
        message = f"Running: {self._pending_message}" if self._pending_message else ""
        try:
            with self._shielded():
                status = self._store.report(self.keys, percent, message, rows, token=self.token)
        except BackendUnavailable as exc:
            # Redis is away for a moment: the job goes on, what it reported
            # stays pending for the next write (its lease is taken back then,
            # unless the job was requeued meanwhile: then the write says so).
            log.warning("job %s cannot report progress: %s", self.job_id, exc)
            self._last_write = now
            return
        self.writes += 1
        self._last_write = now
        if percent is not None:
            self._last_percent = percent
        self._pending_rows.clear()
        self._pending_message = ""
        if status != Status.RUNNING.value:
            self._stop_status = status
        self._raise_if_stopped()

    def _raise_if_stopped(self) -> None:
        if self._stop_status is not None:
            raise JobStopped(self._stop_status)

    def request_stop(self, status: str) -> None:
        """Called by the watchdog: the next progress/check raises, and a job
        running its own code is interrupted now."""
        self._stop_status = status

    @property
    def stop_requested(self) -> bool:
        return self._stop_status is not None

    @contextmanager
    def _shielded(self) -> Iterator[None]:
        """No interrupt while talking to Redis: a half-read reply would poison
        the connection."""
        was = self._interruptible
        self._interruptible = False
        try:
            yield
        finally:
            self._interruptible = was

    @contextmanager
    def running_job_code(self) -> Iterator[None]:
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    def interrupt_now(self, signum: int, frame: Any) -> None:
        if self._interruptible and self._stop_status is not None:
            self._interruptible = False
            raise JobStopped(self._stop_status)


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
                    self._wakes_at = min(self._dogs.values(), default=now + 60)
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
    """Checks the job in Redis while it runs; stops it when it must stop."""

    def __init__(
        self, ctx: JobContext, store: JobStore, settings: Settings, max_runtime: int
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.settings = settings
        self.max_runtime = max_runtime
        self.finished = threading.Event()
        self.job_thread = threading.current_thread()
        self.started = time.monotonic()
        self._stopper: threading.Thread | None = None
        self._old_handler: Any = None
        self._uses_signal = self.job_thread is threading.main_thread()

    def __enter__(self) -> Watchdog:
        if self._uses_signal:
            self._old_handler = signal.signal(INTERRUPT_SIGNAL, self.ctx.interrupt_now)
        _watcher.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.finished.set()
        _watcher.remove(self)
        if self._stopper is not None:
            self._stopper.join(timeout=5)
        if self._uses_signal:
            signal.signal(INTERRUPT_SIGNAL, self._old_handler or signal.SIG_DFL)

    def check_once(self) -> bool:
        """One check (from the shared thread); False once the job must stop."""
        if self.finished.is_set():
            return False
        status = self._check()
        if status is None or status == Status.RUNNING.value:
            return True
        self._stopper = threading.Thread(
            target=self._stop, args=(status,), name="jobgate-stop", daemon=True
        )
        self._stopper.start()
        return False

    def _check(self) -> str | None:
        keys, token = self.ctx.keys, self.ctx.token
        try:
            if time.monotonic() - self.started > self.max_runtime:
                message = f"Ran past its maximum runtime of {self.max_runtime} s"
                self.store.fail(keys, ErrorCode.TIME_LIMIT_EXCEEDED, message, token=token)
                return Status.FAILED.value
            if draining_past_deadline() and self.store.hand_back(keys, token):
                log.warning("job %s handed back to the queue: the worker shuts down", keys.job_id)
                return Status.INITIALIZED.value
            # Also renews the lease: a live watchdog keeps its job's lease, and
            # writes a percent the job reported but left unwritten.
            return self.store.report(keys, self.ctx.held_percent(), token=token)
        except BackendUnavailable as exc:
            log.warning("watchdog cannot reach Redis for job %s: %s", self.ctx.job_id, exc)
            return None

    def _stop(self, status: str) -> None:
        log.info("job %s is %s: stopping it", self.ctx.job_id, status)
        self.ctx.request_stop(status)
        self._interrupt()
        if self.finished.wait(self.settings.cancel_grace):
            return
        if state["in_pool_process"]:
            log.error(
                "job %s did not stop within %.1f s: killing its pool process %d",
                self.ctx.job_id,
                self.settings.cancel_grace,
                os.getpid(),
            )
            os.kill(os.getpid(), signal.SIGKILL)
        else:
            log.error(
                "job %s ignores its stop and cannot be killed outside a pool", self.ctx.job_id
            )

    def _interrupt(self) -> None:
        ident = self.job_thread.ident
        if ident is None:
            return
        if self._uses_signal:
            signal.pthread_kill(ident, INTERRUPT_SIGNAL)
        else:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(ident), ctypes.py_object(JobStopped)
            )


def worker_name() -> str:
    """How the job's record names this execution's worker: Celery node and pid."""
    return f"{state.get('node') or socket.gethostname()}:{os.getpid()}"


def job_error(exc: BaseException, settings: Settings) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": ErrorCode.JOB_ERROR.value,
        "message": str(exc) or type(exc).__name__,
        "retryable": ErrorCode.JOB_ERROR.retryable,
        "details": {"exception": type(exc).__name__},
    }
    if settings.expose_tracebacks:
        error["details"]["traceback"] = "".join(traceback.format_exception(exc))[-8192:]
    return error


def internal_error(message: str) -> dict[str, Any]:
    return {
        "code": ErrorCode.INTERNAL_ERROR.value,
        "message": message,
        "retryable": ErrorCode.INTERNAL_ERROR.retryable,
    }


# How long a worker keeps retrying the start or the end of a job while Redis
# cannot be reached; past it, the lease's expiry hands the job to another try.
REDIS_PATIENCE = 60.0


def patiently(call: Callable[[], R], what: str, patience: float = REDIS_PATIENCE) -> R:
    """``call()``, retried while Redis is unavailable, for at most ``patience`` s."""
    deadline = time.monotonic() + patience
    delay = 0.1
    while True:
        try:
            return call()
        except BackendUnavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("cannot %s yet, retrying in %.1f s: %s", what, delay, exc)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def execute(store: JobStore, settings: Settings, keys: JobKeys) -> str:
    """Run the job ``keys`` if it is still queued; returns what happened."""
    started = patiently(lambda: store.start(keys, worker_name()), f"start job {keys.job_id}")
    if not started.run:
        log.info("job %s not run: it is %s", keys.job_id, started.status)
        return f"skipped:{started.status}"
    job_type = registry.get(started.type)
    if job_type is None:
        error = internal_error(f"No job type {started.type!r} on this worker")
        store.finish_failed(keys, error, token=started.token)
        return "failed:unknown-type"
    try:
        params = job_type.load_params(started.params or {})
    except ValidationError as exc:
        error = internal_error(f"Stored params no longer validate: {exc}")
        store.finish_failed(keys, error, token=started.token)
        return "failed:params"

    ctx = JobContext(store, keys, started.attempt, started.token)
    max_runtime = job_type.runtime_limit(settings.max_runtime)
    state["running"] = True
    try:
        with Watchdog(ctx, store, settings, max_runtime), ctx.running_job_code():
            value = job_type.func(ctx, **params)
    except JobStopped as stop:
        log.info("job %s stopped: %s", keys.job_id, stop.status)
        return f"stopped:{stop.status}"
    except Exception as exc:
        log.info("job %s raised %r", keys.job_id, exc)
        error = job_error(exc, settings)
        patiently(lambda: store.finish_failed(keys, error, token=ctx.token), "end the job")
        return "failed:job-error"
    finally:
        state["running"] = False
    return _store_result(store, settings, ctx, value)


def _store_result(store: JobStore, settings: Settings, ctx: JobContext, value: Any) -> str:
    keys, token = ctx.keys, ctx.token
    try:
        result_json = dumps(value)
    except TypeError as exc:
        error = internal_error(f"The job's result is not JSON: {exc}")
        store.finish_failed(keys, error, token=token)
        return "failed:not-json"
    size = len(result_json.encode())
    if size > settings.max_result_bytes:
        store.finish_failed(
            keys,
            {
                "code": ErrorCode.RESULT_TOO_LARGE.value,
                "message": (
                    f"The result is {size} bytes, over the maximum of "
                    f"{settings.max_result_bytes} (JOBGATE_MAX_RESULT_BYTES)"
                ),
                "retryable": ErrorCode.RESULT_TOO_LARGE.retryable,
            },
            token=token,
        )
        return "failed:too-large"
    if patiently(lambda: store.finish_done(keys, result_json, token=token), "store the result"):
        return "done"
    return "dropped"
