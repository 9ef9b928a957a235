"""The task wrapper: start, progress, and the end of a job.

``execute`` takes a queued job (its lease), runs the job function with a
``JobContext`` as ``ctx`` under a ``Watchdog`` (``workers.watchdog``: time
limit, hand-back at shutdown, lease renewal, stop detection, forced stop), and
stores how it ended. The start and the end are retried while Redis cannot be
reached (``patiently``, with tenacity).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

import orjson
import redis
from marshmallow import ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_before_delay,
    wait_exponential,
)

from workers import limits, logs, registry
from workers.config import Settings
from workers.errors import BackendUnavailable
from workers.job_metrics import JobEnd, JobMetrics
from workers.keys import JobKeys
from workers.process import state as process_state
from workers.states import ErrorCode, Status
from workers.store import JobStore, Started
from workers.store.scripts import Applied
from workers.store.values import dumps
from workers.watchdog import JobStopped, Watchdog

# What a job module imports: ``ctx``'s type and the stop it may see raised.
__all__ = ["JobContext", "JobStopped", "Outcome", "execute", "patiently"]

log = logging.getLogger(__name__)
R = TypeVar("R")

# At most one progress write per this many seconds, unless the percent changed;
# a changed percent waits at most PROGRESS_CHANGE_INTERVAL (or, if the job
# makes no further call, until its watchdog's next check writes it): at most
# 20 writes a second, each a round trip for the job and a wake-up for every
# waiter, and no poller tells 50 ms from 10.
PROGRESS_MIN_INTERVAL = 0.1
PROGRESS_CHANGE_INTERVAL = 0.05
# Partial rows buffered beyond this many are written at the next call that
# comes PROGRESS_CHANGE_INTERVAL or more after the last write.
PUBLISH_FLUSH_ROWS = 5_000
# A ``_due`` that every call has reached: the job must stop (it raises).
_NOW = float("-inf")


class JobContext:
    """What a job function receives as ``ctx``."""

    # Slots: progress() runs in jobs' innermost loops; attribute reads count.
    __slots__ = (
        "_current",
        "_due",
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
        "on_progress",
        "publish",
        "token",
        "writes",
    )

    # ``ctx.publish(rows)``: append rows (JSON values) to the partial result;
    # they are written, all at once, with the next progress write. A row JSON
    # cannot hold fails the job there (``TypeError``). It is the buffer's own
    # ``list.extend``: a job may call it for every row it makes.
    publish: Callable[[Iterable[Any]], None]

    def __init__(
        self,
        store: JobStore,
        keys: JobKeys,
        attempt: int = 1,
        token: str = "",
        *,
        started: float | None = None,
    ) -> None:
        self._store = store
        self.keys = keys
        self.job_id = keys.job_id
        self.attempt = attempt
        self.token = token
        self._last_percent = -1  # the last percent written
        self._current = 0  # the last percent asked, clamped
        self._last_asked: object = None  # the last percent as the job passed it
        # As if written when the job started (``started``, monotonic; now by
        # default): its first write waits as any other, so a job that ends
        # within PROGRESS_CHANGE_INTERVAL writes none (its end is what a
        # reader sees next, in the same round trip count as a job with no
        # progress at all).
        self._last_write = time.monotonic() if started is None else started
        # The first moment a progress call may have something to write: the
        # one check its common case makes (``_NOW`` once the job must stop).
        self._due = self._last_write + PROGRESS_CHANGE_INTERVAL
        self._pending_message = ""
        self._pending_rows: list[Any] = []
        self.publish = self._pending_rows.extend
        self._stop_status: str | None = None
        self._interruptible = False
        self.writes = 0
        # Told (percent, new message or "") after each progress write: the
        # task's progress events (workers.task_states), when they are on.
        self.on_progress: Callable[[int, str], None] | None = None

    # -- the job's API ------------------------------------------------------

    def progress(self, percent: float, message: str = "") -> None:
        """Report integer percent progress; raises ``JobStopped`` if the job
        was cancelled or timed out. Throttled: a changed percent is written
        once 50 ms have passed since the last write (or the job's start),
        anything else at most every 100 ms; what the job leaves unwritten,
        its watchdog writes at its next check.

        Called in a job's innermost loop, so the common case (nothing to write
        for 50 ms after a write) does as little as Python allows: note what
        was asked, read the clock once, compare it with one number.
        """
        if message:
            self._pending_message = message
        if percent != self._last_asked:
            self._last_asked = percent
            self._current = max(0, min(limits.PROGRESS_DONE, int(percent)))
        now = time.monotonic()
        if now >= self._due:
            self._progress_due(now)

    def _progress_due(self, now: float) -> None:
        """A progress call after ``_due``: stop, or write if there is reason to."""
        self._raise_if_stopped()
        if (
            now - self._last_write >= PROGRESS_MIN_INTERVAL
            or self._current != self._last_percent
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
            self._wrote_at(now)
            return
        self.writes += 1
        self._wrote_at(now)
        if percent is not None:
            self._last_percent = percent
        if self.on_progress is not None and status == Status.RUNNING.value:
            self.on_progress(self._last_percent, message)
        self._pending_rows.clear()
        self._pending_message = ""
        if status != Status.RUNNING.value:
            self.request_stop(status)
        self._raise_if_stopped()

    def _wrote_at(self, now: float) -> None:
        self._last_write = now
        self._due = now + PROGRESS_CHANGE_INTERVAL
        if self._stop_status is not None:  # (the watchdog's thread may have just stopped it)
            self._due = _NOW

    def _raise_if_stopped(self) -> None:
        if self._stop_status is not None:
            raise JobStopped(self._stop_status)

    def request_stop(self, status: str) -> None:
        """Called by the watchdog: the next progress/check raises, and a job
        running its own code is interrupted now."""
        self._stop_status = status
        self._due = _NOW

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


def worker_name() -> str:
    """How the job's record names this execution's worker: Celery node and pid."""
    return f"{process_state.node or socket.gethostname()}:{os.getpid()}"


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


# Waits between tries: 0.1 s, doubling, at most 2 s.
RETRY_FIRST_WAIT = 0.1
RETRY_LONGEST_WAIT = 2.0


def patiently(call: Callable[[], R], what: str, patience: float = REDIS_PATIENCE) -> R:
    """``call()``, retried while Redis is unavailable, for at most ``patience`` s.

    Waits 0.1 s, doubling up to 2 s, and logs each wait; gives up (re-raising
    the last ``BackendUnavailable``) rather than sleep past ``patience``
    counted from the first try; any other error is raised at once.
    """
    started = time.monotonic()
    try:
        # The common case, Redis answers: none of tenacity's per-call set-up
        # (~60 us, twice a job, a tenth of a short job's CPU).
        return call()
    except BackendUnavailable as exc:
        first_error: BackendUnavailable | None = exc

    def again() -> R:
        # Tenacity's first try is the failure already had (it waits 0.1 s after
        # it, as after any first failure); from its second on, ``call`` again.
        nonlocal first_error
        if first_error is not None:
            error, first_error = first_error, None
            raise error
        return call()

    def warn(attempt: RetryCallState) -> None:
        exc = attempt.outcome.exception() if attempt.outcome else None
        log.warning("cannot %s yet, retrying in %.1f s: %s", what, attempt.upcoming_sleep, exc)

    retrying = Retrying(
        retry=retry_if_exception_type(BackendUnavailable),
        wait=wait_exponential(multiplier=RETRY_FIRST_WAIT, max=RETRY_LONGEST_WAIT),
        # Patience counts from the first try, which took time before this.
        stop=stop_before_delay(patience - (time.monotonic() - started)),
        before_sleep=warn,
        reraise=True,
    )
    return retrying(again)


SKIPPED = "skipped:"


class Outcome(NamedTuple):
    """What an execution did: ``text`` (``done``, ``failed:<why>``,
    ``stopped:<status>``, ``skipped:<status>``, ``dropped``), and how the job
    ended when this execution ended it (its duration observed in the same
    script call); None when someone else ended it, or it did not end."""

    text: str
    end: JobEnd | None = None

    def __str__(self) -> str:
        return self.text


def execute(
    store: JobStore,
    settings: Settings,
    keys: JobKeys,
    on_progress: Callable[[int, str], None] | None = None,
) -> Outcome:
    """Run the job ``keys`` if it is still queued; returns what happened
    (``skipped:<status>`` when this execution did not take the job).

    The job's queue wait is observed by its first start, its duration by the
    end this execution writes (both in the same script call).
    Every line logged meanwhile carries the job's id and tenant and, once
    started, its type, attempt and the request id of the submit that made it.
    """
    with logs.bound(job_id=keys.job_id, tenant=keys.tenant):
        started = patiently(lambda: store.start(keys, worker_name()), f"start job {keys.job_id}")
        if not started.run:
            log.info("job %s not run: it is %s", keys.job_id, started.status)
            return Outcome(f"{SKIPPED}{started.status}")
        with logs.bound(type=started.type, attempt=started.attempt, request_id=started.request_id):
            log.info("job %s started", keys.job_id)
            outcome = _run_started(store, settings, keys, started, on_progress)
            log.info("job %s ended: %s", keys.job_id, outcome.text)
            return outcome


def _ended(applied: Applied, error: dict[str, Any] | None = None) -> JobEnd | None:
    """How the job ended, from the reply of the finish this execution wrote
    (None when it did not apply, or the record had gone)."""
    if not applied.applied or applied.status not in (Status.DONE.value, Status.FAILED.value):
        return None
    if error is None:
        return JobEnd(Status(applied.status), None, "", applied.seconds, applied.counted)
    code = ErrorCode(error["code"])
    return JobEnd(Status.FAILED, code, str(error["message"]), applied.seconds, applied.counted)


def _fail(store: JobStore, keys: JobKeys, error: dict[str, Any], token: str, what: str) -> Outcome:
    return Outcome(what, _ended(store.end_failed(keys, error, token=token), error))


def _run_started(
    store: JobStore,
    settings: Settings,
    keys: JobKeys,
    started: Started,
    on_progress: Callable[[int, str], None] | None,
) -> Outcome:
    job_type = registry.get(started.type)
    if job_type is None:
        error = internal_error(f"No job type {started.type!r} on this worker")
        return _fail(store, keys, error, started.token, "failed:unknown-type")
    try:
        params = job_type.load_params(started.params or {})
    except ValidationError as exc:
        error = internal_error(f"Stored params no longer validate: {exc}")
        return _fail(store, keys, error, started.token, "failed:params")

    ctx = JobContext(store, keys, started.attempt, started.token)
    ctx.on_progress = on_progress
    max_runtime = job_type.runtime_limit(settings.max_runtime)
    process_state.running = True
    try:
        with Watchdog(ctx, store, settings, max_runtime), ctx.running_job_code():
            value = job_type.func(ctx, **params)
    except JobStopped as stop:
        log.info("job %s stopped: %s", keys.job_id, stop.status)
        return Outcome(f"stopped:{stop.status}")
    except Exception as exc:
        log.info("job %s raised %r", keys.job_id, exc)
        error = job_error(exc, settings)
        applied = patiently(lambda: store.end_failed(keys, error, token=ctx.token), "end the job")
        return Outcome("failed:job-error", _ended(applied, error))
    finally:
        process_state.running = False
    return _store_result(store, settings, ctx, value)


def job_end(store: JobStore, keys: JobKeys) -> JobEnd | None:
    """How the job stands after this execution (its duration observed once
    it ended); None when Redis cannot tell."""
    try:
        return patiently(lambda: _job_end(store, keys), f"read how job {keys.job_id} ended")
    except BackendUnavailable as exc:
        log.warning("job %s: end not observed: %s", keys.job_id, exc)
        return None


def _job_end(store: JobStore, keys: JobKeys) -> JobEnd:
    try:
        return JobMetrics(store.redis).ended(keys)
    except redis.RedisError as exc:
        raise BackendUnavailable(str(exc)) from exc


def _store_result(store: JobStore, settings: Settings, ctx: JobContext, value: Any) -> Outcome:
    keys, token = ctx.keys, ctx.token
    try:
        result_json = dumps(value)
    except TypeError as exc:
        error = internal_error(f"The job's result is not JSON: {exc}")
        return _fail(store, keys, error, token, "failed:not-json")
    size = len(result_json.encode())
    if size > settings.max_result_bytes:
        error = {
            "code": ErrorCode.RESULT_TOO_LARGE.value,
            "message": (
                f"The result is {size} bytes, over the maximum of "
                f"{settings.max_result_bytes} (JOBGATE_MAX_RESULT_BYTES)"
            ),
            "retryable": ErrorCode.RESULT_TOO_LARGE.retryable,
        }
        return _fail(store, keys, error, token, "failed:too-large")
    applied = patiently(lambda: store.end_done(keys, result_json, token=token), "store the result")
    if applied.applied:
        return Outcome("done", _ended(applied))
    return Outcome("dropped")
