"""JobStore: every change of a job's state, each one Lua script.

Each change is atomic and sets the TTLs of all the job's keys in the same
step. Every script first *settles* the job: a heartbeat that has lapsed on a
live job makes it FAILED/TIMED_OUT there and then, whoever looks first.
Raises ``BackendUnavailable`` when Redis is unreachable, ``JobNotFound`` /
``JobExpired`` when a read finds no job.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from workers import keys as keyspace
from workers import limits, registry
from workers.broker import is_redis_url
from workers.config import Settings
from workers.errors import BackendUnavailable, JobExpired, JobgateError, JobNotFound
from workers.keys import JobKeys
from workers.states import ErrorCode, Status
from workers.store.connection import backend_errors, redis_client
from workers.store.hooks import Hooks
from workers.store.liveness import Liveness
from workers.store.records import JobRecord, Started
from workers.store.recovery import Recovery
from workers.store.scripts import (
    Absent,
    Applied,
    CancelOutcome,
    Chunks,
    CreateOutcome,
    ReadReply,
    StartReply,
)
from workers.store.values import dumps, new_id

log = logging.getLogger(__name__)


class Created(NamedTuple):
    """What ``create`` did, and the new job's record when it created it."""

    outcome: CreateOutcome
    record: JobRecord | None = None


class JobStore(Recovery, Liveness, Hooks):
    """The only code that touches Jobgate's Redis keys."""

    # Called (no arguments) after a change that queued a webhook delivery, so
    # that it goes out at once (workers/webhooks.py dispatch); without it, or
    # when it fails, the sweep sends it. Set by the worker and the API.
    hook_sink: Callable[[], None] | None = None

    def _hooked(self, reply: list[Any], index: int) -> None:
        if self.hook_sink is None or len(reply) <= index or not int(reply[index] or 0):
            return
        try:
            self.hook_sink()
        except Exception as exc:  # the sweep sends it instead
            log.warning("webhook not dispatched at once (the sweep will): %s", exc)

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        client = redis_client(settings)
        broker_client = None
        if settings.broker_url != settings.redis_url and is_redis_url(settings.broker_url):
            # The broker is a Redis of its own, a single server, whatever the state's mode.
            broker_settings = settings.with_overrides(
                redis_url=settings.broker_url, redis_mode="single"
            )
            broker_client = redis_client(broker_settings)
        return cls(
            client,
            settings,
            blocking_client=redis_client(settings, blocking=True),
            broker_client=broker_client,
        )

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
        request_id: str = "",
        queue: str = "",
        priority: int = registry.DEFAULT_PRIORITY,
        callback_url: str = "",
        callback_events: tuple[str, ...] = (),
    ) -> Created:
        """Create the job unless its id is taken (see ``CreateOutcome``); a new
        job comes back with its record (what a read would return): one round
        trip for a submit that does not wait. ``watch``: the caller will
        ``wait_for_event`` after the record's ``last_event_id``. ``request_id``:
        the submitting request's X-Request-ID, kept (at most RECORD_VALUE_MAX
        bytes) for the worker's log lines. ``queue``: the broker queue of its
        messages (default JOBGATE_QUEUE), ``priority`` 0-9: where it waits."""
        queue = queue or self.settings.queue
        queue_key = keyspace.queue_index(queue, priority)
        args = (
            job_type,
            params_json,
            poll_timeout,
            retention,
            max_runtime,
            self.settings.tenant_max_active,
            max_attempts,
            int(watch),
            request_id[: limits.RECORD_VALUE_MAX],
            queue,
            priority,
            callback_url,
            "," + ",".join(callback_events) + ",",
        )
        if self.settings.redis_wait_replicas:
            reply = self._create_replicated(keys, args, queue_key)
        else:
            reply = self._run("create_job", keys, *args, queue_key=queue_key)
        outcome = CreateOutcome(reply[0])
        if outcome is not CreateOutcome.CREATED:
            return Created(outcome)
        return Created(outcome, JobRecord.from_reply(keys, ReadReply.after_tag(reply[1:])))

    def _create_replicated(self, keys: JobKeys, args: tuple[Any, ...], queue_key: str) -> list[Any]:
        """create_job, then WAIT on the same connection (one round trip, a
        pipeline): the new record is on JOBGATE_REDIS_WAIT_REPLICAS replicas
        before the submit is answered. Fewer within JOBGATE_REDIS_WAIT_TIMEOUT
        → the new job is deleted again and ``BackendUnavailable`` (503)."""
        pipe = self.redis.pipeline(transaction=False)
        self._run("create_job", keys, *args, client=pipe, queue_key=queue_key)
        wanted = self.settings.redis_wait_replicas
        pipe.execute_command(  # type: ignore[no-untyped-call]
            "WAIT", wanted, int(self.settings.redis_wait_timeout * 1000)
        )
        reply, acked = pipe.execute()
        if reply[0] == CreateOutcome.CREATED and int(acked) < wanted:
            # Not accepted: undone as when its message cannot be sent.
            self.discard(keys)
            raise BackendUnavailable(
                f"Redis replicated the new job to {acked} of {wanted} replica(s) within "
                f"{self.settings.redis_wait_timeout} s"
            )
        return list(reply)

    @backend_errors
    def discard(self, keys: JobKeys) -> None:
        """Undo a create whose task could not be enqueued: leave nothing behind."""
        queue, priority = self.redis.hmget(keys.record, "queue", "priority")
        # One step where one Redis holds it all; a Cluster has no transaction
        # across slots (the job's keys, then its queue index).
        pipe = self.redis.pipeline(transaction=not self.cluster)
        if queue and priority is not None:
            pipe.zrem(keyspace.queue_index(str(queue), int(priority)), keys.task_arg())
        pipe.delete(*keys.all())
        pipe.execute()

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
        replies = self._run_many("read_job", [(keys, (int(poll), limit, 0)) for keys in many])
        outcomes: list[JobRecord | JobgateError] = []
        for keys, reply in zip(many, replies, strict=True):
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
        """What a running job has published so far, in its first chunk."""
        rows: Any = self.redis.get(keys.partial)
        return str(rows or "")

    def partial_chunks(self, keys: JobKeys, count: int) -> Iterator[str]:
        """A running job's published rows, chunk by chunk (``count``: the
        record's ``partial_chunks``), each read when the caller gets to it."""
        names = [keys.partial] + [f"{keys.partial}:{i}" for i in range(1, count)]
        return self._chunks(names, missing_ok=True)

    def result_chunks(self, keys: JobKeys, count: int) -> Iterator[str]:
        """A chunked result's chunks, each read when the caller gets to it;
        a chunk gone meanwhile (the job deleted, expired) raises ``JobExpired``."""
        return self._chunks([f"{keys.result}:{i}" for i in range(count)], missing_ok=False)

    def _chunks(self, names: list[str], *, missing_ok: bool) -> Iterator[str]:
        read = backend_errors(self.redis.get)
        for name in names:
            chunk: Any = read(name)
            if chunk is None:
                if missing_ok:
                    continue
                raise JobExpired("The result's chunks are gone (deleted or expired).")
            yield str(chunk)

    @backend_errors
    def cancel(self, keys: JobKeys) -> CancelOutcome:
        """Cancel a live job, delete a terminal one (see ``CancelOutcome``)."""
        reply = self._run("cancel_job", keys)
        self._hooked(reply, 1)
        return CancelOutcome(reply[0])

    @backend_errors
    def wait_for_event(
        self, keys: JobKeys, after_id: str, timeout: float
    ) -> tuple[str, str] | None:
        """Block until the job's status or progress changes after ``after_id``.

        Returns the latest (event id, status), or None on timeout. No polling:
        one blocking XREAD that Redis wakes when a script appends to the stream
        (which keeps the last EVENTS_KEPT changes: all of them are read, the
        last one answers).
        """
        block_ms = max(1, int(min(timeout, limits.MAX_WAIT_S) * 1000))
        # RESP2 reply: [[stream, [(id, fields)]]] (redis-py types every protocol at once).
        reply: Any = self.blocking.xread(
            {keys.events: after_id}, count=limits.EVENTS_KEPT, block=block_ms
        )
        if not reply:
            return None
        _stream, entries = reply[0]
        event_id, fields = entries[-1]
        return str(event_id), str(fields.get("s", ""))

    @backend_errors
    def events_after(
        self, keys: JobKeys, after_id: str, timeout: float
    ) -> list[tuple[str, dict[str, str]]]:
        """The entries of the job's events stream after ``after_id`` (up to
        EVENTS_KEPT), blocking up to ``timeout`` s for the first one when
        there are none yet; [] on timeout. The connection returns to the pool
        after each call, so a stream's reader holds one only while it blocks."""
        if timeout <= 0:
            entries: Any = self.redis.xrange(keys.events, f"({after_id}", "+")
            return [(str(i), dict(f)) for i, f in entries]
        block_ms = max(1, int(min(timeout, limits.MAX_WAIT_S) * 1000))
        reply: Any = self.blocking.xread(
            {keys.events: after_id}, count=limits.EVENTS_KEPT, block=block_ms
        )
        if not reply:
            return []
        _stream, found = reply[0]
        return [(str(i), dict(f)) for i, f in found]

    @backend_errors
    def fail(self, keys: JobKeys, code: ErrorCode, message: str, *, token: str = "") -> bool:
        """Fail a job that is not terminal yet; True when this call did it.

        With a worker's ``token``, only the execution that token owns. Whether
        the error is retryable is the code's (``workers.states.RETRYABLE``).
        """
        reply = self._run("fail_job", keys, code.value, message, token=token)
        self._hooked(reply, 2)
        return Applied.parse(reply).applied

    # -- the worker side ----------------------------------------------------

    @backend_errors
    def start(self, keys: JobKeys, worker: str = "") -> Started:
        """Take the job if it is queued: RUNNING under a new lease."""
        token = new_id()
        lease_ms = int(self.settings.lease_ttl * 1000)
        worker = (worker or _this_worker())[: limits.RECORD_VALUE_MAX]
        reply = StartReply.parse(self._run("start_job", keys, worker, lease_ms, token=token))
        return Started.from_reply(reply, token)

    @backend_errors
    def report(
        self,
        keys: JobKeys,
        percent: int | None = None,
        message: str = "",
        rows: str | bytes = "",
        *,
        token: str = "",
        chunk: int = 0,
    ) -> str:
        """Write progress (one round trip), renew the lease, return the job's status.

        Anything but RUNNING means the job must stop: cancelled, timed out,
        failed by the watchdog, gone, or LEASE_LOST (another execution took over).
        ``rows`` go to the partial rows' chunk number ``chunk``.
        """
        pct = -1 if percent is None else percent
        reply = self._run("report_progress", keys, pct, message, rows, chunk, token=token)
        self._hooked(reply, 2)
        return str(reply[0])

    def finish_done(
        self,
        keys: JobKeys,
        result_json: str,
        *,
        token: str = "",
        chunks: Chunks | None = None,
        truncated: bool = False,
    ) -> bool:
        """Store the result and make the job DONE; False if it had stopped.

        With ``chunks``, ``result_json`` is the manifest of a result kept in
        chunks (the partial rows', or those ``write_chunk`` wrote)."""
        return self.end_done(
            keys, result_json, token=token, chunks=chunks, truncated=truncated
        ).applied

    @backend_errors
    def write_chunk(self, keys: JobKeys, index: int, data: str, *, token: str = "") -> bool:
        """Write chunk ``index`` of a large result before ``finish_done``;
        False if the job had stopped."""
        return Applied.parse(self._run("write_chunk", keys, index, data, token=token)).applied

    def finish_failed(self, keys: JobKeys, error: dict[str, Any], *, token: str = "") -> bool:
        """Make the job FAILED with ``error``; False if it had stopped."""
        return self.end_failed(keys, error, token=token).applied

    @backend_errors
    def end_done(
        self,
        keys: JobKeys,
        result_json: str,
        *,
        token: str = "",
        chunks: Chunks | None = None,
        truncated: bool = False,
    ) -> Applied:
        """``finish_done``, with what the call did: the job's status after it,
        and when it applied, its duration as observed in the same step."""
        reply = self._run(
            "finish_job",
            keys,
            Status.DONE.value,
            result_json,
            chunks.value if chunks else "",
            "1" if truncated else "",
            token=token,
        )
        self._hooked(reply, 2)
        return Applied.parse(reply)

    @backend_errors
    def end_failed(self, keys: JobKeys, error: dict[str, Any], *, token: str = "") -> Applied:
        """``finish_failed``, with what the call did (see ``end_done``)."""
        payload = dumps({"id": new_id(), **error})
        reply = self._run("finish_job", keys, Status.FAILED.value, payload, token=token)
        self._hooked(reply, 2)
        return Applied.parse(reply)

    @backend_errors
    def hand_back(self, keys: JobKeys, token: str) -> bool:
        """Give a running job back to the queue (the worker shuts down)."""
        reply = self._run("hand_back", keys, self.settings.max_hand_backs, token=token)
        return Applied.parse(reply).applied


def _this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _record_or_raise(keys: JobKeys, raw: list[Any]) -> JobRecord:
    reply = ReadReply.parse(raw)
    if reply is Absent.MISSING:
        raise JobNotFound(f"No job {keys.job_id!r}.")
    if isinstance(reply, Absent):
        raise JobExpired(f"Job {keys.job_id!r} has expired; its status and result are gone.")
    return JobRecord.from_reply(keys, reply)
