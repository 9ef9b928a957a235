"""The sweep's side of the store: settle due jobs, find lost messages, resend.

Works with ``workers/broker.py`` (where a message is) and ``workers/sweep.py``
(the periodic task that calls these).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from workers import keys as keyspace
from workers import limits
from workers.keys import JobKeys
from workers.registry import DEFAULT_PRIORITY
from workers.states import Status
from workers.store.connection import backend_errors
from workers.store.core import StoreCore
from workers.store.scripts import LostOutcome
from workers.store.values import redis_ms


class Resend(NamedTuple):
    """A job waiting for its message to be sent again."""

    keys: JobKeys
    type: str  # '' when the job has gone meanwhile
    seq: int  # the number of the message to send
    queue: str  # its broker queue ('' for a job made before queues: the type's)
    priority: int


RESEND_FIELDS = ("type", "msgs", "queue", "priority")


def _resend(
    keys: JobKeys, job_type: str | None, msgs: str | None, queue: str | None, priority: str | None
) -> Resend:
    return Resend(
        keys,
        str(job_type or ""),
        int(msgs or 1) + 1,
        str(queue or ""),
        int(priority or DEFAULT_PRIORITY),
    )


class Recovery(StoreCore):
    @backend_errors
    def sweep_due(self, batch: int = limits.SWEEP_BATCH) -> int:
        """Settle every job whose next clock is due; returns how many were looked at.

        Reads ``jobgate:due`` by score (never the keyspace); each job's check is
        one atomic script, so two sweeps at once do no harm.
        """
        looked = 0
        while True:
            now_ms = redis_ms(self.redis.time())
            members: Any = self.redis.zrangebyscore(keyspace.DUE, "-inf", now_ms, 0, batch)
            if not members:
                return looked
            self._run_many("sweep_job", [(JobKeys.from_task_arg(str(m)), ()) for m in members])
            looked += len(members)
            if len(members) < batch:
                return looked

    @backend_errors
    def requeued(self, batch: int = limits.SWEEP_BATCH) -> list[Resend]:
        """Jobs waiting for their Celery message to be sent again (oldest
        first), with their type ('' when the job has gone meanwhile) and the
        number of the message to send (the record's ``msgs`` + 1)."""
        members: Any = self.redis.zrange(keyspace.REQUEUE, 0, batch - 1)
        many = [JobKeys.from_task_arg(str(member)) for member in members]
        pipe = self.redis.pipeline(transaction=False)
        for keys in many:
            pipe.hmget(keys.record, *RESEND_FIELDS)
        return [_resend(keys, *fields) for keys, fields in zip(many, pipe.execute(), strict=True)]

    @backend_errors
    def claim_requeued(self, batch: int = limits.SWEEP_BATCH) -> list[Resend]:
        """``requeued``, each job taken off the requeue list by this call (a
        ZREM only one of two sweeps at once wins): only the winner sends the
        job's message, so two sweeps do not send it twice."""
        members: Any = self.redis.zrange(keyspace.REQUEUE, 0, batch - 1)
        many = [JobKeys.from_task_arg(str(member)) for member in members]
        pipe = self.redis.pipeline(transaction=False)
        for keys in many:
            pipe.zrem(keyspace.REQUEUE, keys.task_arg())
            pipe.hmget(keys.record, *RESEND_FIELDS)
        replies = pipe.execute()
        return [
            _resend(keys, *fields)
            for keys, removed, fields in zip(many, replies[::2], replies[1::2], strict=True)
            if removed
        ]

    @backend_errors
    def unclaim(self, keys: JobKeys) -> None:
        """A claimed job whose message could not be sent: back on the requeue list."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(keyspace.REQUEUE, {keys.task_arg(): redis_ms(self.redis.time())})
        pipe.expire(keyspace.REQUEUE, self._index_ttl)
        pipe.execute()

    @backend_errors
    def mark_resent(self, keys: JobKeys, seq: int) -> None:
        """The job's message number ``seq`` is on the broker: take the job off
        the requeue list, note the message, count the resend."""
        self._run("resent", keys, seq)

    @backend_errors
    def find_lost_messages(self, grace_ms: int = limits.LOST_MESSAGE_GRACE_MS) -> int:
        """Queue for a resend the waiting jobs whose current message is lost;
        returns how many.

        Exact, by message identity: each job's current message (task id
        ``<tenant>:<id>:<msgs>``) is looked for in the broker's lists and in
        kombu's unacked hash. It is lost when it is in neither (popped by a
        worker that stopped before reading it, celery#4354; never sent by an
        API process that died), or when it was delivered ``grace_ms`` +
        JOBGATE_SHUTDOWN_GRACE ago and its job has still not started (held by
        a worker that was killed: kombu would give it back only after its
        visibility timeout, hours). Found so twice, ``LOST_CONFIRM_MS`` apart
        (lost_message.lua), it is sent again, at most ``MAX_LOST_RESENDS``
        times (both in workers/limits.py). Only the head of the queue index
        (the longest-waiting jobs) is read, never the keyspace.
        """
        if self.broker is None:
            return 0
        candidates = self._waiting_messages(grace_ms)
        if not candidates:
            return 0
        where = self.broker.find(list(candidates))
        held_since = time.time() - (grace_ms / 1000 + self.settings.shutdown_grace)
        clear = self.redis.pipeline(transaction=False)
        lost: list[tuple[JobKeys, tuple[Any, ...]]] = []
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
            lost.append((keys, (seq,)))
        clear.execute()
        outcomes = [LostOutcome(reply[0]) for reply in self._run_many("lost_message", lost)]
        return sum(1 for o in outcomes if o in (LostOutcome.REQUEUED, LostOutcome.FAILED))

    def _waiting_messages(self, grace_ms: int) -> dict[str, tuple[JobKeys, str, bool]]:
        """The current message of each job at the head of the queue indexes
        (of every queue and priority) that still waits, sent at least
        ``grace_ms`` ago and not about to be sent again: {message id: (job,
        its sequence number, already suspected)}."""
        heads = self.redis.pipeline(transaction=False)
        for queue in self.queues():
            for index in [keyspace.queue_index(queue), *self.queue_indexes(queue)]:
                heads.zrange(index, 0, limits.SWEEP_BATCH - 1)
        members = list(dict.fromkeys(str(m) for head in heads.execute() for m in head))
        members = members[: limits.SWEEP_BATCH]
        if not members:
            return {}
        many = [JobKeys.from_task_arg(m) for m in members]
        pipe = self.redis.pipeline(transaction=False)
        if not self.cluster:  # no TIME in a cluster pipeline (it names no key)
            pipe.time()
        for keys in many:
            pipe.hmget(keys.record, "status", "sent", "msgs", "absent")
        pipe.zmscore(keyspace.REQUEUE, members)
        replies = pipe.execute()
        if self.cluster:
            replies.insert(0, self.redis.time())
        now_reply, *fields, requeued = replies
        now_ms = redis_ms(now_reply)
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
