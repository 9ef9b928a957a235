"""JobStore: every Redis read and write of Jobgate, Lua scripts beside it.

Each change of a job is one Lua script (``workers/lua``), so it is atomic and
sets the TTLs of all the job's keys in the same step. Every script first
*settles* the job: a heartbeat that has lapsed on a live job makes it
FAILED/TIMED_OUT there and then, whoever looks first.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import orjson
import redis
from redis.commands.core import Script
from ulid import ULID

from workers import keys as keyspace
from workers import registry
from workers.broker import Broker, is_redis_url
from workers.config import Settings
from workers.errors import BackendUnavailable, JobExpired, JobgateError, JobNotFound
from workers.keys import JobKeys
from workers.states import ErrorCode, Status

log = logging.getLogger(__name__)

LUA_DIR = Path(__file__).parent / "lua"
SCRIPT_NAMES = (
    "create_job",
    "read_job",
    "start_job",
    "report_progress",
    "finish_job",
    "fail_job",
    "cancel_job",
    "hand_back",
    "sweep_job",
    "lost_message",
    "resent",
)
# The sweep looks at this many due jobs per round trip.
SWEEP_BATCH = 200
# The sweep looks for the message of a waiting job only once it was sent this
# long ago (the API's send, with its retries, is over by then); a message
# delivered to a worker this long ago (plus JOBGATE_SHUTDOWN_GRACE, the
# longest a live worker may hold a message unstarted) without starting its
# job is held by a worker that died.
LOST_MESSAGE_GRACE_MS = 10_000
# A message is lost only when a second look, this much later, still finds it
# nowhere (lost_message.lua).
LOST_CONFIRM_MS = 3_000
# How many times one job's message may be found lost and sent again; past it
# the job ends FAILED/WORKER_LOST (retryable).
MAX_LOST_RESENDS = 3
# Blocking reads wait at most this long (the contract's longest wait is 60 s);
# the socket of the blocking client must outlast them.
MAX_BLOCK_SECONDS = 60.0
# Connections beyond one per request thread: watchdogs, heartbeats, pipelines.
POOL_SPARE_CONNECTIONS = 16

P = ParamSpec("P")
R = TypeVar("R")


def lua_source(name: str) -> str:
    prelude = (LUA_DIR / "_prelude.lua").read_text()
    return prelude + "\n" + (LUA_DIR / f"{name}.lua").read_text()


def backend_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Redis unreachable or too slow → ``BackendUnavailable`` (503)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BackendUnavailable(f"Redis is unavailable: {exc}") from exc

    return wrapper


def new_id() -> str:
    return str(ULID())


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def canonical_params(params: dict[str, Any]) -> str:
    """The params as stored and compared for idempotent replays."""
    return orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode()


def _int_or_none(raw: str | None) -> int | None:
    return int(raw) if raw not in (None, "") else None


@dataclass(frozen=True)
class Execution:
    """One execution of a job, as its record keeps it."""

    attempt: int
    worker: str
    started_ms: int
    ended_ms: int | None = None
    outcome: str | None = None  # DONE, FAILED, lost, handed_back

    @classmethod
    def all_from(cls, raw: dict[str, str]) -> tuple[Execution, ...]:
        """From the record's ``run:<n>`` ('start[ end outcome]') and ``run:<n>:w`` fields."""
        runs = []
        for attempt in range(1, int(raw.get("attempt", 0)) + 1):
            parts = raw.get(f"run:{attempt}", "").split(" ")
            if not parts[0]:
                continue
            closed = len(parts) == 3
            runs.append(
                cls(
                    attempt=attempt,
                    worker=raw.get(f"run:{attempt}:w", ""),
                    started_ms=int(parts[0]),
                    ended_ms=int(parts[1]) if closed else None,
                    outcome=parts[2] if closed else None,
                )
            )
        return tuple(runs)


@dataclass(frozen=True)
class JobRecord:
    """A job as read from Redis, at Redis's own clock ``now_ms``."""

    keys: JobKeys
    type: str
    params: dict[str, Any]
    status: Status
    progress: int
    message: str
    created_ms: int
    poll_timeout: int
    retention: int
    max_runtime: int
    attempt: int
    now_ms: int
    last_event_id: str = "0-0"
    started_ms: int | None = None
    deadline_ms: int | None = None
    finished_ms: int | None = None
    expires_ms: int | None = None
    error: dict[str, Any] | None = None
    result_bytes: int | None = None
    result_json: str | None = None
    queue_position: int | None = None
    order: int = 0
    max_attempts: int = 1
    runs: tuple[Execution, ...] = ()

    @property
    def job_id(self) -> str:
        return self.keys.job_id

    @classmethod
    def from_reply(cls, keys: JobKeys, reply: list[Any]) -> JobRecord:
        _, flat, result_json, last_event_id, now, position = reply
        raw = dict(zip(flat[::2], flat[1::2], strict=True))
        error = raw.get("error")
        return cls(
            keys=keys,
            type=raw["type"],
            params=orjson.loads(raw["params"]),
            status=Status(raw["status"]),
            progress=int(raw.get("progress", 0)),
            message=raw.get("message", ""),
            created_ms=int(raw["created"]),
            poll_timeout=int(raw["poll_timeout"]),
            retention=int(raw["retention"]),
            max_runtime=int(raw["max_runtime"]),
            attempt=int(raw.get("attempt", 0)),
            now_ms=int(now),
            last_event_id=last_event_id,
            started_ms=_int_or_none(raw.get("started")),
            deadline_ms=_int_or_none(raw.get("deadline")),
            finished_ms=_int_or_none(raw.get("finished")),
            expires_ms=_int_or_none(raw.get("expires")),
            error=orjson.loads(error) if error else None,
            result_bytes=_int_or_none(raw.get("result_bytes")),
            result_json=result_json or None,
            queue_position=None if position is None else int(position),
            order=int(raw.get("order", 0)),
            max_attempts=int(raw.get("max_attempts", 1)),
            runs=Execution.all_from(raw),
        )


@dataclass(frozen=True)
class Started:
    """What ``start`` tells the worker: run it, or why not."""

    run: bool
    status: str
    type: str = ""
    params: dict[str, Any] | None = None
    attempt: int = 0
    token: str = ""


def redis_client(settings: Settings, *, blocking: bool = False) -> redis.Redis:
    """A client whose every call fails fast when Redis is down.

    The blocking client serves long waits (XREAD BLOCK), so its socket timeout
    outlasts the longest wait; connecting stays bounded either way.
    """
    socket_timeout = (
        MAX_BLOCK_SECONDS + settings.redis_timeout if blocking else settings.redis_timeout
    )
    pool = redis.ConnectionPool.from_url(
        settings.redis_url,
        # Every request thread may hold one connection of each pool at once.
        # (redis-py caps a pool at 100 by default, and Redis.from_url drops
        # max_connections, so the pool is built here.)
        max_connections=settings.web_threads + POOL_SPARE_CONNECTIONS,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=settings.redis_timeout,
        health_check_interval=30,
        retry_on_timeout=False,
    )
    return redis.Redis(connection_pool=pool)


class JobStore:
    """The only code that touches Jobgate's Redis keys."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        blocking_client: redis.Redis | None = None,
        broker_client: redis.Redis | None = None,
    ) -> None:
        self.redis = client
        self.blocking = blocking_client or client
        self.settings = settings
        self._scripts: dict[str, Script] = {
            name: client.register_script(lua_source(name)) for name in SCRIPT_NAMES
        }
        self._index_ttl = self.index_ttl
        # The broker's keys, where the sweep looks for messages (None: a broker
        # that is not Redis, where no message can be found by its id).
        self.broker: Broker | None = Broker(broker_client or client, settings.queue)
        if settings.broker_url != settings.redis_url and broker_client is None:
            self.broker = None

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        client = redis_client(settings)
        broker_client = None
        if settings.broker_url != settings.redis_url and is_redis_url(settings.broker_url):
            broker_client = redis_client(settings.with_overrides(redis_url=settings.broker_url))
        return cls(
            client,
            settings,
            blocking_client=redis_client(settings, blocking=True),
            broker_client=broker_client,
        )

    @property
    def index_ttl(self) -> int:
        """Seconds the longest-lived job can exist: how long index entries matter."""
        runtimes = [t.runtime_limit(self.settings.max_runtime) for t in registry.all_types()]
        longest_clock = max(self.settings.poll_timeout_max, self.settings.max_runtime, *runtimes)
        return longest_clock + self.settings.retention_max

    def _keys(self, keys: JobKeys) -> list[str]:
        """The job's own keys, then the shared indexes it appears in."""
        return [
            *keys.all(),
            keyspace.queue_index(self.settings.queue),
            keyspace.tenant_index(keys.tenant),
            keyspace.SEQUENCE,
            keyspace.tenant_active(keys.tenant),
            keyspace.STATS,
            keyspace.tenant_listed(keys.tenant),
            keyspace.DUE,
            keyspace.REQUEUE,
        ]

    def _argv(self, token: str, *args: Any) -> list[Any]:
        return [new_id(), self.settings.tombstone_ttl, self._index_ttl, token, *args]

    def _run(self, name: str, keys: JobKeys, *args: Any, token: str = "") -> list[Any]:
        script = self._scripts[name]
        reply: list[Any] = script(keys=self._keys(keys), args=self._argv(token, *args))
        return reply

    # -- the API side -------------------------------------------------------

    @backend_errors
    def create(
        self,
        keys: JobKeys,
        job_type: str,
        params_json: str,
        *,
        poll_timeout: int,
        retention: int,
        max_runtime: int,
        max_attempts: int = registry.DEFAULT_MAX_ATTEMPTS,
        watch: bool = False,
    ) -> str:
        """'created', 'exists' (same payload), 'conflict', 'tombstoned', or
        'too_many' (the tenant has JOBGATE_TENANT_MAX_ACTIVE live jobs)."""
        outcome, _record = self.create_and_read(
            keys,
            job_type,
            params_json,
            poll_timeout=poll_timeout,
            retention=retention,
            max_runtime=max_runtime,
            max_attempts=max_attempts,
            watch=watch,
        )
        return outcome

    @backend_errors
    def create_and_read(
        self,
        keys: JobKeys,
        job_type: str,
        params_json: str,
        *,
        poll_timeout: int,
        retention: int,
        max_runtime: int,
        max_attempts: int = registry.DEFAULT_MAX_ATTEMPTS,
        watch: bool = False,
    ) -> tuple[str, JobRecord | None]:
        """``create``, and the new job's record (what a read would return) when
        it was created: one round trip for a submit that does not wait."""
        reply = self._run(
            "create_job",
            keys,
            job_type,
            params_json,
            poll_timeout,
            retention,
            max_runtime,
            self.settings.tenant_max_active,
            max_attempts,
            int(watch),
        )
        if reply[0] == "created":
            return "created", JobRecord.from_reply(keys, reply)
        return str(reply[0]), None

    @backend_errors
    def discard(self, keys: JobKeys) -> None:
        """Undo a create whose task could not be enqueued: leave nothing behind."""
        self.redis.delete(*keys.all())

    @backend_errors
    def read(
        self, keys: JobKeys, *, poll: bool, inline_max: int | None = None, watch: bool = False
    ) -> JobRecord:
        """The job's record; a ``poll`` also renews its heartbeat atomically.

        The result comes along when the job is DONE and the result is at most
        ``inline_max`` bytes (``None``: always). ``watch``: the caller will
        ``wait_for_event`` after the record's ``last_event_id``.
        """
        limit = -1 if inline_max is None else inline_max
        reply = self._run("read_job", keys, int(poll), limit, int(watch))
        return _record_or_raise(keys, reply)

    @backend_errors
    def read_many(
        self, many: list[JobKeys], *, poll: bool, inline_max: int | None = None
    ) -> list[JobRecord | JobgateError]:
        """Read several jobs in one round trip (a pipeline of reads)."""
        limit = -1 if inline_max is None else inline_max
        pipe = self.redis.pipeline(transaction=False)
        for keys in many:
            self._scripts["read_job"](
                keys=self._keys(keys), args=self._argv("", int(poll), limit, 0), client=pipe
            )
        outcomes: list[JobRecord | JobgateError] = []
        for keys, reply in zip(many, pipe.execute(), strict=True):
            try:
                outcomes.append(_record_or_raise(keys, reply))
            except (JobNotFound, JobExpired) as exc:
                outcomes.append(exc)
        return outcomes

    @backend_errors
    def list_ids(self, tenant: str, before: float | None, count: int) -> list[tuple[str, float]]:
        """A tenant's job ids, newest first, strictly older than ``before``."""
        top = "+inf" if before is None else f"({before}"
        pairs: Any = self.redis.zrevrangebyscore(
            keyspace.tenant_index(tenant), top, "-inf", start=0, num=count, withscores=True
        )
        return [(str(member), float(score)) for member, score in pairs]

    @backend_errors
    def forget(self, tenant: str, job_ids: list[str]) -> None:
        """Drop listing entries of jobs that have gone."""
        if job_ids:
            self.redis.zrem(keyspace.tenant_index(tenant), *job_ids)

    @backend_errors
    def partial_rows(self, keys: JobKeys) -> str:
        """What a running job has published so far (NDJSON)."""
        rows: Any = self.redis.get(keys.partial)
        return str(rows or "")

    @backend_errors
    def cancel(self, keys: JobKeys) -> str:
        """'cancelled' (was live), 'deleted' (was terminal), 'missing' or 'gone'."""
        return str(self._run("cancel_job", keys)[0])

    @backend_errors
    def wait_for_event(
        self, keys: JobKeys, after_id: str, timeout: float
    ) -> tuple[str, str] | None:
        """Block until the job's status or progress changes after ``after_id``.

        Returns (event id, status), or None on timeout. No polling: one
        blocking XREAD that Redis wakes when a script appends to the stream.
        """
        block_ms = max(1, int(min(timeout, MAX_BLOCK_SECONDS) * 1000))
        # RESP2 reply: [[stream, [(id, fields)]]] (redis-py types every protocol at once).
        reply: Any = self.blocking.xread({keys.events: after_id}, count=1, block=block_ms)
        if not reply:
            return None
        _stream, entries = reply[0]
        event_id, fields = entries[-1]
        return str(event_id), str(fields.get("s", ""))

    @backend_errors
    def fail(self, keys: JobKeys, code: ErrorCode, message: str, *, token: str = "") -> bool:
        """Fail a job that is not terminal yet; True when this call did it.

        With a worker's ``token``, only the execution that token owns.
        """
        reply = self._run("fail_job", keys, code.value, message, int(code.retryable), token=token)
        return bool(reply[1])

    # -- the worker side ----------------------------------------------------

    @backend_errors
    def start(self, keys: JobKeys, worker: str = "") -> Started:
        """Take the job if it is queued: RUNNING under a new lease."""
        token = new_id()
        lease_ms = int(self.settings.lease_ttl * 1000)
        # At most 64 bytes, as every value of the record (see end_run in _prelude.lua).
        worker = (worker or _this_worker())[:64]
        reply = self._run("start_job", keys, worker, lease_ms, token=token)
        if reply[0] != "run":
            status = reply[1] if reply[0] == "skip" else reply[0]
            return Started(run=False, status=str(status))
        _, job_type, params_json, attempt = reply
        return Started(
            run=True,
            status=Status.RUNNING.value,
            type=job_type,
            params=orjson.loads(params_json),
            attempt=int(attempt),
            token=token,
        )

    @backend_errors
    def report(
        self,
        keys: JobKeys,
        percent: int | None = None,
        message: str = "",
        rows: str | bytes = "",
        *,
        token: str = "",
    ) -> str:
        """Write progress (one round trip), renew the lease, return the job's status.

        Anything but RUNNING means the job must stop: cancelled, timed out,
        failed by the watchdog, gone, or LEASE_LOST (another execution took over).
        """
        pct = -1 if percent is None else percent
        reply = self._run("report_progress", keys, pct, message, rows, token=token)
        return str(reply[0])

    @backend_errors
    def finish_done(self, keys: JobKeys, result_json: str, *, token: str = "") -> bool:
        """Store the result and make the job DONE; False if it had stopped."""
        reply = self._run("finish_job", keys, Status.DONE.value, result_json, token=token)
        return bool(reply[1])

    @backend_errors
    def finish_failed(self, keys: JobKeys, error: dict[str, Any], *, token: str = "") -> bool:
        """Make the job FAILED with ``error``; False if it had stopped."""
        payload = dumps({"id": new_id(), **error})
        return bool(self._run("finish_job", keys, Status.FAILED.value, payload, token=token)[1])

    @backend_errors
    def hand_back(self, keys: JobKeys, token: str) -> bool:
        """Give a running job back to the queue (the worker shuts down)."""
        reply = self._run("hand_back", keys, self.settings.max_hand_backs, token=token)
        return bool(reply[1])

    # -- the sweep ----------------------------------------------------------

    @backend_errors
    def sweep_due(self, batch: int = SWEEP_BATCH) -> int:
        """Settle every job whose next clock is due; returns how many were looked at.

        Reads ``jobgate:due`` by score (never the keyspace); each job's check is
        one atomic script, so two sweeps at once do no harm.
        """
        looked = 0
        while True:
            now_ms = _redis_ms(self.redis.time())
            members: Any = self.redis.zrangebyscore(keyspace.DUE, "-inf", now_ms, 0, batch)
            if not members:
                return looked
            pipe = self.redis.pipeline(transaction=False)
            for member in members:
                keys = JobKeys.from_member(str(member))
                self._scripts["sweep_job"](keys=self._keys(keys), args=self._argv(""), client=pipe)
            pipe.execute()
            looked += len(members)
            if len(members) < batch:
                return looked

    @backend_errors
    def requeued(self, batch: int = SWEEP_BATCH) -> list[tuple[JobKeys, str, int]]:
        """Jobs waiting for their Celery message to be sent again (oldest
        first), with their type ('' when the job has gone meanwhile) and the
        number of the message to send (the record's ``msgs`` + 1)."""
        members: Any = self.redis.zrange(keyspace.REQUEUE, 0, batch - 1)
        many = [JobKeys.from_member(str(member)) for member in members]
        pipe = self.redis.pipeline(transaction=False)
        for keys in many:
            pipe.hmget(keys.record, "type", "msgs")
        return [
            (keys, str(job_type or ""), int(msgs or 1) + 1)
            for keys, (job_type, msgs) in zip(many, pipe.execute(), strict=True)
        ]

    @backend_errors
    def claim_requeued(self, batch: int = SWEEP_BATCH) -> list[tuple[JobKeys, str, int]]:
        """``requeued``, each job taken off the requeue list by this call (a
        ZREM only one of two sweeps at once wins): only the winner sends the
        job's message, so two sweeps do not send it twice."""
        members: Any = self.redis.zrange(keyspace.REQUEUE, 0, batch - 1)
        many = [JobKeys.from_member(str(member)) for member in members]
        pipe = self.redis.pipeline(transaction=False)
        for keys in many:
            pipe.zrem(keyspace.REQUEUE, keys.task_arg())
            pipe.hmget(keys.record, "type", "msgs")
        replies = pipe.execute()
        return [
            (keys, str(job_type or ""), int(msgs or 1) + 1)
            for keys, removed, (job_type, msgs) in zip(
                many, replies[::2], replies[1::2], strict=True
            )
            if removed
        ]

    @backend_errors
    def unclaim(self, keys: JobKeys) -> None:
        """A claimed job whose message could not be sent: back on the requeue list."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(keyspace.REQUEUE, {keys.task_arg(): _redis_ms(self.redis.time())})
        pipe.expire(keyspace.REQUEUE, self._index_ttl)
        pipe.execute()

    @backend_errors
    def mark_resent(self, keys: JobKeys, seq: int) -> None:
        """The job's message number ``seq`` is on the broker: take the job off
        the requeue list, note the message, count the resend."""
        self._run("resent", keys, seq)

    @backend_errors
    def find_lost_messages(self, grace_ms: int = LOST_MESSAGE_GRACE_MS) -> int:
        """Queue for a resend the waiting jobs whose current message is lost;
        returns how many.

        Exact, by message identity: each job's current message (task id
        ``<tenant>:<id>``, number ``msgs`` in its header) is looked for in the
        broker's lists and in kombu's unacked hash. It is lost when it is in neither (popped by a
        worker that stopped before reading it, celery#4354; never sent by an
        API process that died), or when it was delivered ``grace_ms`` +
        JOBGATE_SHUTDOWN_GRACE ago and its job has still not started (held by
        a worker that was killed: kombu would give it back only after its
        visibility timeout, hours). Found so twice, ``LOST_CONFIRM_MS`` apart
        (lost_message.lua), it is sent again, at most ``MAX_LOST_RESENDS``
        times. Only the head of the queue index (the longest-waiting jobs) is
        read, never the keyspace.
        """
        if self.broker is None:
            return 0
        candidates = self._waiting_messages(grace_ms)
        if not candidates:
            return 0
        where = self.broker.find(list(candidates))
        held_since = time.time() - (grace_ms / 1000 + self.settings.shutdown_grace)
        clear = self.redis.pipeline(transaction=False)
        check = self.redis.pipeline(transaction=False)
        for message_id, (keys, seq, suspected) in candidates.items():
            place = where.get(message_id, "")
            if place == "unknown":  # behind more messages than one look reads
                continue
            if place == "queued" or (
                place.startswith("unacked:") and float(place.split(":", 1)[1]) > held_since
            ):
                if suspected:
                    clear.hdel(keys.record, "absent")
                continue
            self._scripts["lost_message"](
                keys=self._keys(keys),
                args=self._argv("", seq, LOST_CONFIRM_MS, MAX_LOST_RESENDS),
                client=check,
            )
        clear.execute()
        return sum(1 for reply in check.execute() if reply[0] in ("requeued", "failed"))

    def _waiting_messages(self, grace_ms: int) -> dict[str, tuple[JobKeys, str, bool]]:
        """The current message of each job at the head of the queue index that
        still waits, sent at least ``grace_ms`` ago and not about to be sent
        again: {message id: (job, its sequence number, already suspected)}."""
        queue_index = keyspace.queue_index(self.settings.queue)
        members = [str(m) for m in self.redis.zrange(queue_index, 0, SWEEP_BATCH - 1)]
        if not members:
            return {}
        many = [JobKeys.from_member(m) for m in members]
        pipe = self.redis.pipeline(transaction=False)
        pipe.time()
        for keys in many:
            pipe.hmget(keys.record, "status", "sent", "msgs", "absent")
        pipe.zmscore(keyspace.REQUEUE, members)
        now_reply, *fields, requeued = pipe.execute()
        now_ms = _redis_ms(now_reply)
        candidates: dict[str, tuple[JobKeys, str, bool]] = {}
        for keys, (status, sent_raw, msgs, absent), resend in zip(
            many, fields, requeued, strict=True
        ):
            sent = int(sent_raw or 0)
            waiting = status == Status.INITIALIZED.value and resend is None
            if waiting and 0 < sent <= now_ms - grace_ms:
                seq = str(msgs or 1)
                candidates[keys.message_id(int(seq))] = (keys, seq, bool(absent))
        return candidates

    # -- operations ---------------------------------------------------------

    @backend_errors
    def ping(self) -> bool:
        return bool(self.redis.ping())

    @backend_errors
    def mark_worker_alive(self, worker: str, ttl: int = 30) -> None:
        """Record that ``worker`` is alive; entries older than ``ttl`` are trimmed."""
        now = float(self.redis.time()[0])
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(keyspace.WORKERS, {worker: now})
        pipe.zremrangebyscore(keyspace.WORKERS, "-inf", now - ttl)
        pipe.expire(keyspace.WORKERS, ttl)
        pipe.execute()

    @backend_errors
    def workers_seen(self, within: int = 30) -> list[str]:
        now = float(self.redis.time()[0])
        seen: Any = self.redis.zrangebyscore(keyspace.WORKERS, now - within, "+inf")
        return [str(name) for name in seen]

    @backend_errors
    def metrics_snapshot(self) -> dict[str, Any]:
        """What /metrics reports, read in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keyspace.STATS)
        pipe.zcard(keyspace.queue_index(self.settings.queue))
        pipe.time()
        stats, queued, (now, _) = pipe.execute()
        messages = self.broker.waiting() if self.broker is not None else 0
        workers = self.redis.zcount(keyspace.WORKERS, float(now) - 30, "+inf")
        return {
            "stats": {str(k): int(v) for k, v in stats.items()},
            "queued": int(queued),
            "messages": int(messages),
            "workers": int(workers),
        }

    @backend_errors
    def memory_policy(self) -> str | None:
        """Redis's maxmemory-policy, or None when CONFIG is not allowed."""
        try:
            reply = self.redis.config_get("maxmemory-policy")
        except redis.ResponseError:
            return None
        policy = reply.get("maxmemory-policy")
        return str(policy) if policy is not None else None

    def warn_unless_noeviction(self) -> None:
        try:
            policy = self.memory_policy()
        except BackendUnavailable:
            return
        if policy not in (None, "noeviction"):
            log.warning(
                "Redis maxmemory-policy is %r: under memory pressure Redis may evict job "
                "state. Run it with maxmemory-policy noeviction.",
                policy,
            )


def _redis_ms(reply: Any) -> int:
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


def _this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _record_or_raise(keys: JobKeys, reply: list[Any]) -> JobRecord:
    if reply[0] == "missing":
        raise JobNotFound(f"No job {keys.job_id!r}.")
    if reply[0] == "gone":
        raise JobExpired(f"Job {keys.job_id!r} has expired; its status and result are gone.")
    return JobRecord.from_reply(keys, reply)
