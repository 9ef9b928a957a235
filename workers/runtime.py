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
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

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
from workers.store.chunks import (
    JSON,
    RESULT_CHUNK_BYTES,
    ROWS,
    batch_line,
    cut_rows,
    cut_text,
    header_line,
    manifest,
    rows_json,
)
from workers.store.scripts import Applied, Chunks
from workers.store.values import dumps
from workers.watchdog import JobStopped, Watchdog

# What a job module imports: ``ctx``'s type and the stop it may see raised.
__all__ = [
    "JobContext",
    "JobFailure",
    "JobStopped",
    "Outcome",
    "RowsResult",
    "execute",
    "patiently",
]

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


class JobFailure(Exception):
    """Raise it to fail the job (JOB_ERROR) with ``details`` of your own (an
    SQL error's sqlstate, message and position), beside the exception's name."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class ResultTooLarge(Exception):
    """The rows a job published passed JOBGATE_MAX_RESULT_BYTES."""

    def __init__(self, size: int) -> None:
        super().__init__(f"The result passed {size} bytes")
        self.size = size


@dataclass(frozen=True)
class RowsResult:
    """What ``ctx.rows_result()`` returns: the result is the published rows."""

    columns: list[Any] | None
    # The lines written, when they all fit one chunk; None when they did not.
    kept: list[bytes] | None


class JobContext:
    """What a job function receives as ``ctx``."""

    # Slots: progress() runs in jobs' innermost loops; attribute reads count.
    __slots__ = (
        "_chunk",
        "_chunk_bytes",
        "_columns",
        "_current",
        "_due",
        "_header_pending",
        "_interruptible",
        "_kept",
        "_last_asked",
        "_last_percent",
        "_last_write",
        "_on_stop",
        "_pending_message",
        "_pending_rows",
        "_published_bytes",
        "_stop_status",
        "_store",
        "attempt",
        "job_id",
        "keys",
        "on_progress",
        "publish",
        "token",
        "truncated",
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
        # ``ctx.publish(rows)``: append rows (JSON values) to the partial
        # result, written all at once with the next progress write (a row
        # JSON cannot hold fails the job there). The buffer's own extend: no
        # call of ours in a job's innermost loop.
        self.publish = self._pending_rows.extend
        self._stop_status: str | None = None
        self._interruptible = False
        self.writes = 0
        # The table's columns (``columns``), written once before the rows.
        self._columns: list[Any] | None = None
        self._header_pending = False
        # The partial rows' chunk being filled, and its bytes so far.
        self._chunk = 0
        self._chunk_bytes = 0
        self._published_bytes = 0
        # The lines written, while they fit one chunk: a small ``rows_result``
        # is then stored as an ordinary result (no chunks, no extra key).
        self._kept: list[bytes] | None = []
        # Called (from the watchdog's thread) when the job must stop.
        self._on_stop: list[Callable[[], None]] = []
        # Set by the job when it cut its result short (max rows, max matches).
        self.truncated = False
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

    def flush(self) -> None:
        """Write what is pending (rows, percent, message) now, unthrottled:
        call it before a call that may block for long (a database fetch), so
        the rows published so far are visible meanwhile. Raises ``JobStopped``
        as ``progress`` does; does nothing when nothing is pending."""
        if self._pending_rows or self._header_pending or self.held_percent() is not None:
            self._write(self._current, time.monotonic())
        else:
            self._raise_if_stopped()

    def columns(self, columns: list[Any]) -> None:
        """Name the columns of the rows this job publishes (names, or
        ``{"name": ..., "type": ...}`` objects), for a table whose columns are
        known only once the job runs (sql.query). Written with the next write,
        before the rows; call it once, before the first ``publish``."""
        self._columns = list(columns)
        self._header_pending = True

    def rows_result(self, truncated: bool = False) -> RowsResult:
        """Return this from the job function: its result is the rows it
        published, as ``{"columns": [...], "rows": [...]}`` (or a list of rows
        without ``columns``). Writes what is pending first. Rows past one
        chunk stay in Redis in chunks: the job never holds them all, and
        results up to JOBGATE_MAX_RESULT_BYTES can be stored."""
        self.truncated = self.truncated or truncated
        deadline = time.monotonic() + REDIS_PATIENCE
        self._write(None, time.monotonic())
        while self._pending_rows or self._header_pending:  # Redis was away a moment
            if time.monotonic() > deadline:
                raise BackendUnavailable("cannot write the last rows of the result")
            time.sleep(RETRY_LONGEST_WAIT)
            self._write(None, time.monotonic())
        return RowsResult(self._columns, self._kept)

    def on_stop(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Have ``callback()`` called, from another thread, as soon as the
        job must stop (cancelled, timed out, past its time limit): a job
        blocked in a database call cancels the call there (sql.query).
        Returns a function that unregisters it."""
        self._on_stop.append(callback)
        if self._stop_status is not None:
            callback()

        def remove() -> None:
            if callback in self._on_stop:
                self._on_stop.remove(callback)

        return remove

    @property
    def settings(self) -> Settings:
        return self._store.settings

    # -- the runtime's side -------------------------------------------------

    def _write(self, percent: int | None, now: float) -> None:
        # The partial result is stored as lines, each a JSON array of the rows
        # of one write: one orjson call for the whole batch.
        rows = self._pending_rows
        line = batch_line(rows) if rows else b""
        if len(rows) > 1 and len(line) > self._room():
            self._write_in_parts(percent, now, len(line) / len(rows))
            return
        self._write_line(percent, now, line)

    def _room(self) -> int:
        """Bytes the current chunk of partial rows takes before the next one starts."""
        if self._chunk_bytes >= RESULT_CHUNK_BYTES:
            return RESULT_CHUNK_BYTES
        return RESULT_CHUNK_BYTES - self._chunk_bytes

    def _write_in_parts(self, percent: int | None, now: float, row_bytes: float) -> None:
        """Rows that would overfill the chunk, written a chunk's worth at a
        time (a burst published between two writes, 50 ms of a fast loop, can
        be megabytes): no chunk grows far past RESULT_CHUNK_BYTES."""
        rows = self._pending_rows
        rest = rows[:]
        rows.clear()
        while rest:
            take = max(1, int(self._room() / row_bytes))
            rows.extend(rest[:take])
            del rest[:take]
            self._write_line(None if rest else percent, now, batch_line(rows))
            if rows:  # not written (Redis away a moment): all of it stays pending
                rows.extend(rest)
                return

    def _write_line(self, percent: int | None, now: float, line: bytes) -> None:
        payload = header_line(self._columns or []) if self._header_pending else b""
        payload += line
        if payload:
            if self._published_bytes + len(payload) > self._store.settings.max_result_bytes:
                raise ResultTooLarge(self._published_bytes + len(payload))
            if self._chunk_bytes >= RESULT_CHUNK_BYTES:
                self._chunk += 1
                self._chunk_bytes = 0
        message = f"Running: {self._pending_message}" if self._pending_message else ""
        try:
            with self._shielded():
                status = self._store.report(
                    self.keys, percent, message, payload or "", token=self.token, chunk=self._chunk
                )
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
        if payload:
            self._chunk_bytes += len(payload)
            self._published_bytes += len(payload)
            if self._kept is not None:
                self._kept.append(payload)
                if self._published_bytes > RESULT_CHUNK_BYTES:
                    self._kept = None
        self._pending_rows.clear()
        self._header_pending = False
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
        running its own code is interrupted now, and its ``on_stop``
        callbacks are called (here, in the watchdog's thread)."""
        self._stop_status = status
        self._due = _NOW
        for callback in list(self._on_stop):
            try:
                callback()
            except Exception:
                log.exception("job %s: a stop callback failed", self.job_id)

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
    if isinstance(exc, JobFailure):
        error["details"].update(exc.details)
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
    job_type = registry.get_available(started.type, settings)
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
    except ResultTooLarge as exc:
        log.info("job %s published too much: %s", keys.job_id, exc)
        error = too_large(exc.size, settings)
        applied = patiently(lambda: store.end_failed(keys, error, token=ctx.token), "end the job")
        return Outcome("failed:too-large", _ended(applied, error))
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


def too_large(size: int, settings: Settings) -> dict[str, Any]:
    return {
        "code": ErrorCode.RESULT_TOO_LARGE.value,
        "message": (
            f"The result is {size} bytes, over the maximum of "
            f"{settings.max_result_bytes} (JOBGATE_MAX_RESULT_BYTES)"
        ),
        "retryable": ErrorCode.RESULT_TOO_LARGE.retryable,
    }


def _store_result(store: JobStore, settings: Settings, ctx: JobContext, value: Any) -> Outcome:
    keys, token = ctx.keys, ctx.token
    if isinstance(value, RowsResult):
        return _store_rows(store, settings, ctx, value)
    try:
        result_json = dumps(value)
    except TypeError as exc:
        error = internal_error(f"The job's result is not JSON: {exc}")
        return _fail(store, keys, error, token, "failed:not-json")
    size = len(result_json.encode())
    if size > settings.max_result_bytes:
        return _fail(store, keys, too_large(size, settings), token, "failed:too-large")
    if size > RESULT_CHUNK_BYTES:
        return _store_chunked_value(store, ctx, value, result_json)
    return _done(store, ctx, result_json)


def _done(
    store: JobStore, ctx: JobContext, result_json: str, chunks: Chunks | None = None
) -> Outcome:
    """Store the result (or its manifest) and make the job DONE."""

    def finish() -> Applied:
        return store.end_done(
            ctx.keys, result_json, token=ctx.token, chunks=chunks, truncated=ctx.truncated
        )

    applied = patiently(finish, "store the result")
    if applied.applied:
        return Outcome("done", _ended(applied))
    return Outcome("dropped")


def _store_rows(store: JobStore, settings: Settings, ctx: JobContext, rows: RowsResult) -> Outcome:
    """The published rows as the result: an ordinary result when they fit one
    chunk, else their chunks kept as the result's (nothing is rewritten)."""
    if rows.kept is None:
        return _done(store, ctx, manifest(ROWS), Chunks.PARTIAL)
    text = b"".join(rows_json(rows.columns, [b"".join(rows.kept).decode()])).decode()
    size = len(text.encode())
    if size > settings.max_result_bytes:
        return _fail(store, ctx.keys, too_large(size, settings), ctx.token, "failed:too-large")
    return _done(store, ctx, text)


def _store_chunked_value(store: JobStore, ctx: JobContext, value: Any, result_json: str) -> Outcome:
    """A returned value over one chunk, written in chunks: a table (a list, or
    ``{"columns", "rows"}``) as lines of rows, so csv and ndjson stream it
    too; anything else as pieces of its JSON text (served as json)."""
    keys, token = ctx.keys, ctx.token
    pieces: Iterable[str]
    if isinstance(value, list):
        kind, pieces = ROWS, cut_rows(None, value)
    elif (
        isinstance(value, dict)
        and value.keys() == {"columns", "rows"}
        and isinstance(value["columns"], list)
        and isinstance(value["rows"], list)
    ):
        kind, pieces = ROWS, cut_rows(value["columns"], value["rows"])
    else:
        kind, pieces = JSON, cut_text(result_json)
    for index, piece in enumerate(pieces):

        def write(index: int = index, piece: str = piece) -> bool:
            return store.write_chunk(keys, index, piece, token=token)

        if not patiently(write, "store the result"):
            return Outcome("dropped")
    return _done(store, ctx, manifest(kind), Chunks.WRITTEN)
