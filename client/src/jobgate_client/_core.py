"""The client's logic, without I/O: shared by ``Client`` and ``AsyncClient``.

Every operation is a *flow*: a generator that yields effects — a
:class:`Request` to send, a :class:`Sleep`, or an :class:`Emit` of a value for
the caller — and is sent back what the effect produced (a :class:`Reply` or a
:class:`NetworkError` for a request, ``None`` otherwise). The sync and async
shells (``_sync.py``, ``_async.py``) only carry effects out, so retries,
backoff, poll scheduling and the mapping of problems to exceptions exist once.

Polling rules (the contract's advice, docs/api.md §3):

- every poll made while waiting is a long poll (``?wait=``) held at most half
  the job's poll timeout, so the heartbeat it renews never lapses meanwhile;
- ``wait()`` starts the next poll ``Retry-After`` seconds after the previous
  one started; a watcher of progress starts it ``progress_interval`` after a
  change, at once after a long poll that ran its full hold, and after
  ``Retry-After`` when the server answered at once without holding;
- never later than half the poll timeout after the last poll, so the job's
  ``poll_deadline`` is never passed;
- 429, 5xx and connection errors are retried with exponential backoff and
  full jitter (never sooner than ``Retry-After``), capped, until an overall
  deadline, then raised as :class:`RateLimited` or :class:`Unavailable`.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar, Union
from urllib.parse import quote

from jobgate_client.errors import (
    IdConflict,
    JobExpired,
    JobFailed,
    JobgateError,
    JobNotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    ValidationFailed,
    WaitTimeout,
)
from jobgate_client.models import JobType, Snapshot

T = TypeVar("T")

VERSION = "0.1.0"
DEFAULT_URL = "http://127.0.0.1:8000"
FORMATS = ("json", "csv", "ndjson")
MAX_RESULTS_IDS = 100  # the API's limit for GET /v1/jobs/results
MAX_LONG_POLL = 30.0  # the API's limit for ?wait=
TRANSIENT = frozenset({429, 500, 502, 503, 504})


# -- effects and outcomes -----------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    hold: float = 0.0  # seconds the server may hold the answer (long polls)
    stream: bool = False  # hand back a 200's body unread, as ``Reply.stream``


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes
    sent_at: float  # time.monotonic() when the request went out
    stream: Any = None  # the shell's open response (Request.stream and 200)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class NetworkError:
    """No answer: refused, reset, dropped, timed out."""

    reason: str


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Emit:
    """A value for the caller: a snapshot to show, a listed job."""

    value: Any


Effect = Union[Request, Sleep, Emit]
Outcome = Union[Reply, NetworkError, None]
Flow = Generator[Effect, Outcome, T]


# -- configuration ------------------------------------------------------------


@dataclass
class Policy:
    """How patient the client is. Every number is seconds."""

    retry_timeout: float = 30.0  # overall deadline of one request's retries
    backoff_base: float = 0.5  # first backoff ceiling, doubled each attempt
    backoff_cap: float = 10.0  # largest backoff ceiling
    long_poll: float = MAX_LONG_POLL  # longest ?wait= asked for
    progress_interval: float = 0.5  # least time between polls of a watcher
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter (uniform in 0..ceiling), never sooner than the server asked."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2**attempt)
        delay = self.rng.uniform(0, ceiling)
        return max(delay, retry_after or 0.0)


@dataclass
class Config:
    """What ``Client`` and ``AsyncClient`` are built from (url and key default to the env)."""

    url: str
    headers: dict[str, str]
    timeout: float  # seconds to wait for an answer, on top of a long poll's hold
    policy: Policy

    @classmethod
    def build(
        cls,
        url: str | None,
        api_key: str | None,
        timeout: float,
        retry_timeout: float,
        progress_interval: float,
    ) -> Config:
        key = api_key if api_key is not None else os.environ.get("JOBGATE_API_KEY")
        found = {"User-Agent": f"jobgate-client/{VERSION}"}
        if key:
            found["Authorization"] = f"Bearer {key}"
        policy = Policy(retry_timeout=retry_timeout, progress_interval=progress_interval)
        base = (url or os.environ.get("JOBGATE_URL") or DEFAULT_URL).rstrip("/")
        return cls(base, found, timeout, policy)

    def request_args(self, request: Request) -> dict[str, Any]:
        """``httpx.(Async)Client.build_request`` arguments; a long poll gets its hold on top."""
        return {
            "method": request.method,
            "url": request.path,
            "params": dict(request.params),
            "json": request.body,
            "timeout": self.timeout + request.hold,
        }


def keeps_open(request: Request, status: int) -> bool:
    """Whether the shell hands back this answer's body unread (``Reply.stream``)."""
    return request.stream and status == 200


def network_error(exc: Exception) -> NetworkError:
    return NetworkError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


@contextmanager
def writable(target: str | os.PathLike[str] | IO[bytes]) -> Iterator[IO[bytes]]:
    """A binary file to write to: ``target`` itself, or the path opened (and closed)."""
    if isinstance(target, (str, os.PathLike)):
        with open(target, "wb") as out:
            yield out
    else:
        yield target


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A ULID (48-bit milliseconds + 80 random bits, Crockford base32), like the server's."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


# -- requests -----------------------------------------------------------------


def job_path(job_id: str) -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}"


def submit_request(
    job_type: str,
    params: Mapping[str, Any] | None,
    job_id: str,
    wait: float | None,
    poll_timeout: int | None,
    retention: int | None,
    priority: int | None = None,
) -> Request:
    body: dict[str, Any] = {"type": job_type, "params": dict(params or {}), "id": job_id}
    optional = {
        "wait": wait,
        "poll_timeout": poll_timeout,
        "retention": retention,
        "priority": priority,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    return Request("POST", "/v1/jobs", body=body, hold=float(wait or 0))


def status_request(job_id: str, hold: float = 0.0) -> Request:
    params = {"wait": f"{hold:.1f}"} if hold > 0 else {}
    return Request("GET", job_path(job_id), params=params, hold=hold)


def result_request(
    job_id: str, fmt: str, *, partial: bool = False, stream: bool = False
) -> Request:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    params = {"format": fmt}
    if partial:
        params["partial"] = "true"
    return Request("GET", f"{job_path(job_id)}/result", params=params, stream=stream)


def list_request(
    status: str | None, job_type: str | None, limit: int, cursor: str | None
) -> Request:
    query = {"status": status, "type": job_type, "limit": str(limit), "cursor": cursor}
    return Request("GET", "/v1/jobs", params={k: v for k, v in query.items() if v is not None})


# -- answers ------------------------------------------------------------------


def retry_after(outcome: Outcome) -> float | None:
    """``Retry-After`` in seconds (the API sends delta-seconds), if any."""
    if not isinstance(outcome, Reply):
        return None
    try:
        return max(0.0, float(outcome.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _problem(reply: Reply) -> dict[str, Any]:
    try:
        problem = reply.json()
    except ValueError:
        return {}
    return problem if isinstance(problem, dict) else {}


_BY_STATUS: dict[int, type[JobgateError]] = {
    400: ValidationFailed,
    401: Unauthorized,
    404: JobNotFound,
    406: ValidationFailed,
    409: IdConflict,
    410: JobExpired,
    413: ValidationFailed,
    415: ValidationFailed,
    422: ValidationFailed,
    429: RateLimited,
}


def problem_error(reply: Reply, job_id: str | None = None) -> JobgateError:
    """The exception for an error answer (problem+json, docs/api.md §3)."""
    problem = _problem(reply)
    code = problem.get("code")
    if code == "JOB_FAILED":
        error = problem.get("error") or {"code": "JOB_ERROR", "message": problem.get("detail")}
        return JobFailed(job_id or "?", error, status=reply.status, problem=problem)
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {reply.status}")
    if reply.status >= 500:
        kind: type[JobgateError] = Unavailable
    else:
        kind = _BY_STATUS.get(reply.status, JobgateError)
    return kind(detail, status=reply.status, code=code, problem=problem)


def checked(reply: Reply, job_id: str | None = None) -> Reply:
    if reply.status >= 400:
        raise problem_error(reply, job_id)
    return reply


def give_up(outcome: Outcome, request: Request, seconds: float) -> JobgateError:
    if isinstance(outcome, Reply):
        error = problem_error(outcome)
        error.detail = f"{error.detail} (still so after retrying for {seconds:g} s)"
        error.args = (error.detail,)
        return error
    reason = outcome.reason if isinstance(outcome, NetworkError) else "no answer"
    return Unavailable(f"{request.method} {request.path}: {reason} (retried for {seconds:g} s)")


def snapshot_of(reply: Reply) -> Snapshot:
    return Snapshot.from_document(reply.json())


# -- flows: one request -------------------------------------------------------


def call(request: Request, policy: Policy) -> Flow[Reply]:
    """Send ``request`` until it gets a non-transient answer or the deadline passes.

    Every request Jobgate takes is safe to repeat: reads and DELETE are
    idempotent, and a submit carries the id the client chose.
    """
    started = time.monotonic()
    deadline = started + policy.retry_timeout
    attempt = 0
    while True:
        outcome = yield request
        if isinstance(outcome, Reply) and outcome.status not in TRANSIENT:
            return outcome
        now = time.monotonic()
        if now >= deadline:
            raise give_up(outcome, request, now - started)
        yield Sleep(min(policy.backoff(attempt, retry_after(outcome)), deadline - now))
        attempt += 1


def fetch_json(request: Request, policy: Policy) -> Flow[Any]:
    reply = yield from call(request, policy)
    return checked(reply).json()


# -- flows: a job -------------------------------------------------------------


@dataclass
class JobState:
    """What the client knows of one job, and when it last polled it."""

    snapshot: Snapshot
    sent_at: float  # when the last poll went out
    retry_after: float = 1.0  # the last Retry-After
    held: float = 0.0  # how long the last poll asked the server to hold
    answered_in: float = 0.0  # how long the last poll took
    changed: bool = True  # whether the last poll showed something new

    @classmethod
    def from_reply(cls, reply: Reply) -> JobState:
        state = cls(snapshot_of(reply), reply.sent_at)
        state.retry_after = retry_after(reply) or 1.0
        return state

    def update(self, reply: Reply) -> Snapshot:
        previous, self.snapshot = self.snapshot, snapshot_of(reply)
        self.changed = self.snapshot.changed_from(previous)
        self.sent_at = reply.sent_at
        self.answered_in = time.monotonic() - reply.sent_at
        self.retry_after = retry_after(reply) or self.retry_after
        return self.snapshot

    def heartbeat_window(self) -> float | None:
        """Half the poll timeout: the longest the client lets pass between polls."""
        if self.snapshot.terminal or self.snapshot.poll_timeout <= 0:
            return None
        return self.snapshot.poll_timeout / 2

    def next_poll_at(self, policy: Policy, follow: bool) -> float:
        if not follow:
            gap = self.retry_after
        elif self.changed:
            gap = policy.progress_interval
        elif self.answered_in < self.held * 0.9:  # answered at once: the server would not hold
            gap = self.retry_after
        else:
            gap = 0.0
        window = self.heartbeat_window()
        if window is not None:
            gap = min(gap, window)
        return self.sent_at + gap

    def hold(self, policy: Policy, time_left: float | None) -> float:
        hold = policy.long_poll
        window = self.heartbeat_window()
        if window is not None:
            hold = min(hold, window)
        if time_left is not None:
            hold = min(hold, time_left)
        return max(0.0, hold)


class JobView:
    """What ``Job`` and ``AsyncJob`` share: the job as last read."""

    def __init__(self, state: JobState) -> None:
        self._state = state

    @property
    def snapshot(self) -> Snapshot:
        return self._state.snapshot

    @property
    def id(self) -> str:
        return self._state.snapshot.id

    @property
    def type(self) -> str:
        return self._state.snapshot.type

    @property
    def status(self) -> str:
        return self._state.snapshot.status

    @property
    def progress(self) -> int:
        return self._state.snapshot.progress

    @property
    def message(self) -> str:
        return self._state.snapshot.message

    @property
    def error(self) -> dict[str, Any] | None:
        return self._state.snapshot.error

    def __repr__(self) -> str:
        snap = self._state.snapshot
        return f"<{type(self).__name__} {snap.id} {snap.type} {snap.status} {snap.progress}%>"


def submit(request: Request, policy: Policy) -> Flow[JobState]:
    reply = yield from call(request, policy)
    return JobState.from_reply(checked(reply))


def open_job(job_id: str, policy: Policy) -> Flow[JobState]:
    reply = yield from call(status_request(job_id), policy)
    return JobState.from_reply(checked(reply, job_id))


def poll(state: JobState, policy: Policy, hold: float = 0.0) -> Flow[Snapshot]:
    request = status_request(state.snapshot.id, hold)
    reply = yield from call(request, policy)
    state.held = hold
    return state.update(checked(reply, state.snapshot.id))


def watch(
    state: JobState, policy: Policy, timeout: float | None, *, follow: bool
) -> Flow[Snapshot]:
    """Poll until the job is terminal; with ``follow``, emit each snapshot that shows a change."""
    deadline = None if timeout is None else time.monotonic() + timeout
    shown: Snapshot | None = None
    while True:
        if follow and state.snapshot.changed_from(shown):
            shown = state.snapshot
            yield Emit(shown)
        if state.snapshot.terminal:
            return state.snapshot
        now = time.monotonic()
        next_at = state.next_poll_at(policy, follow)
        if deadline is not None and next_at >= deadline:
            yield Sleep(max(0.0, deadline - now))
            raise WaitTimeout(f"job {state.snapshot.id} is still {state.snapshot.status}")
        if next_at > now:
            yield Sleep(next_at - now)
        time_left = None if deadline is None else deadline - time.monotonic()
        yield from poll(state, policy, state.hold(policy, time_left))


def finished(state: JobState, policy: Policy, timeout: float | None) -> Flow[Snapshot]:
    """Wait for the end; a FAILED job raises :class:`JobFailed`."""
    snapshot = yield from watch(state, policy, timeout, follow=False)
    if snapshot.status == "FAILED":
        raise JobFailed(snapshot.id, snapshot.error or {})
    return snapshot


def result(state: JobState, policy: Policy, timeout: float | None) -> Flow[Any]:
    snapshot = yield from finished(state, policy, timeout)
    if snapshot.has_inline_result:
        return snapshot.raw["result"]
    reply = yield from call(result_request(snapshot.id, "json"), policy)
    return checked(reply, snapshot.id).json()


def result_stream(state: JobState, policy: Policy, fmt: str, timeout: float | None) -> Flow[Reply]:
    """The finished job's result as an unread body (``Reply.stream``) for the shell to stream."""
    yield from finished(state, policy, timeout)
    request = result_request(state.snapshot.id, fmt, stream=True)
    reply = yield from call(request, policy)
    return checked(reply, state.snapshot.id)


def partial(state: JobState, policy: Policy) -> Flow[Any]:
    request = result_request(state.snapshot.id, "json", partial=True)
    reply = yield from call(request, policy)
    return checked(reply, state.snapshot.id).json()


def cancel(state: JobState, policy: Policy) -> Flow[Snapshot | None]:
    """A live job becomes FAILED/CANCELLED_BY_USER (its snapshot); a finished one is deleted."""
    reply = yield from call(Request("DELETE", job_path(state.snapshot.id)), policy)
    checked(reply, state.snapshot.id)
    if reply.status == 204:
        return None
    return state.update(reply)


# -- flows: the client --------------------------------------------------------


def list_jobs(
    policy: Policy, status: str | None, job_type: str | None, page_size: int
) -> Flow[None]:
    """Emit every job of every page, newest first."""
    cursor: str | None = None
    while True:
        page = yield from fetch_json(list_request(status, job_type, page_size, cursor), policy)
        for doc in page["jobs"]:
            yield Emit(Snapshot.from_document(doc))
        cursor = page.get("next_cursor")
        if not cursor:
            return


def results(ids: Iterable[str], policy: Policy) -> Flow[dict[str, Any]]:
    """``GET /v1/jobs/results`` in batches of the API's 100 ids."""
    wanted = list(dict.fromkeys(ids))
    found: dict[str, Any] = {}
    for start in range(0, len(wanted), MAX_RESULTS_IDS):
        batch = ",".join(wanted[start : start + MAX_RESULTS_IDS])
        request = Request("GET", "/v1/jobs/results", params={"ids": batch})
        found.update((yield from fetch_json(request, policy)))
    return found


def job_types(policy: Policy) -> Flow[list[JobType]]:
    body = yield from fetch_json(Request("GET", "/v1/job-types"), policy)
    return [JobType.from_document(doc) for doc in body["job_types"]]


# -- streamed bodies ----------------------------------------------------------


class LineDecoder:
    """NDJSON from chunks of bytes, one parsed value per line, holding one partial line."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> list[Any]:
        lines = (self._tail + chunk).split(b"\n")
        self._tail = lines.pop()
        return [json.loads(line) for line in lines if line.strip()]

    def close(self) -> list[Any]:
        tail, self._tail = self._tail, b""
        return [json.loads(tail)] if tail.strip() else []
