"""Every Redis key name Jobgate uses. A literal ``jobgate:`` elsewhere is a bug.

All keys of one job share the hash tag ``{tenant:id}`` so they live in one
Redis Cluster slot and one Lua script may change them together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "jobgate:"
WORKERS = PREFIX + "workers"


def queue_workers(queue: str) -> str:
    """Sorted set of the workers consuming ``queue``, scored by their last heartbeat."""
    return f"{PREFIX}workers:{queue}"


# A counter that makes index scores unique within a millisecond.
SEQUENCE = PREFIX + "seq"


QUEUE_INDEX_PREFIX = PREFIX + "queue:"


def queue_index(queue: str, priority: int | None = None) -> str:
    """Sorted set of the waiting jobs (``tenant:id``) of one queue and one
    priority, in enqueue order. Without a priority: the index of jobs made
    before queues had priorities (their record has no ``queue``)."""
    if priority is None:
        return f"{QUEUE_INDEX_PREFIX}{queue}"
    return f"{QUEUE_INDEX_PREFIX}{queue}:{priority}"


def tenant_index(tenant: str) -> str:
    """Sorted set of a tenant's job ids, newest last, for listing."""
    return f"{PREFIX}tenant:{tenant}:jobs"


def tenant_listed(tenant: str) -> str:
    """Sorted set of the tenant's listed job ids, scored by when their last key expires."""
    return f"{PREFIX}tenant:{tenant}:listed"


def tenant_active(tenant: str) -> str:
    """Sorted set of a tenant's live job ids, scored by when each stops being live."""
    return f"{PREFIX}tenant:{tenant}:active"


# Live jobs scored by the next moment the sweep should look at them (a poll
# deadline, a lease expiry); never a full scan of the keyspace.
DUE = PREFIX + "due"
# Jobs requeued after a lost worker or a hand-back, waiting for the sweep to
# send their Celery message again.
REQUEUE = PREFIX + "requeue"


# Webhook deliveries (workers/webhooks.py): a hash of the pending ones
# (webhook id → what to deliver, JSON) and a sorted set of them scored by
# when each is due (a retry's time, or a dispatched one's claim expiry). One
# hash tag for both: a Redis Cluster keeps them in one slot, so settling a
# delivery stays one atomic step there too (workers/store/hooks.py).
HOOKS = PREFIX + "{hooks}"
HOOKS_DUE = PREFIX + "{hooks}:due"

# Hash of job counters for /metrics (submitted, finished by status and code).
STATS = PREFIX + "stats"

# Histograms for /metrics (workers/job_metrics.py), hashes of bucket counts:
# field ``<labels>|<upper bound>`` counts the values that fell in that bucket
# alone (cumulative buckets are summed at scrape time), ``<labels>|sum`` their sum.
JOB_DURATION = PREFIX + "metrics:job_duration"
JOB_QUEUE_WAIT = PREFIX + "metrics:job_queue_wait"
HTTP_DURATION = PREFIX + "metrics:http_duration"
WEBHOOK_DURATION = PREFIX + "metrics:webhook_duration"
# Hash of HTTP request counts, field ``<method>|<route>|<status>``.
HTTP_REQUESTS = PREFIX + "metrics:http_requests"

# Prefix of the rate limiter's counters (Flask-Limiter / limits).
RATE_LIMIT_PREFIX = PREFIX + "ratelimit"


# Ids and tenant names can never contain a character that breaks the key
# schema (``{`` ``}`` ``:`` ``*`` whitespace) or a Location header (``/``).
# ID_PATTERN documents the rule (OpenAPI); checks use fullmatch, because
# re.match(r"^...$") also accepts a trailing newline.
ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def valid_id(value: str) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


@dataclass(frozen=True)
class JobKeys:
    """The keys of one job; the tenant is part of its identity."""

    tenant: str
    job_id: str

    @property
    def tag(self) -> str:
        return f"{{{self.tenant}:{self.job_id}}}"

    @property
    def record(self) -> str:
        return f"{PREFIX}job:{self.tag}"

    @property
    def heartbeat(self) -> str:
        return f"{self.record}:hb"

    @property
    def result(self) -> str:
        return f"{self.record}:result"

    @property
    def partial(self) -> str:
        return f"{self.record}:partial"

    @property
    def events(self) -> str:
        return f"{self.record}:events"

    @property
    def tombstone(self) -> str:
        return f"{self.record}:tomb"

    @property
    def lease(self) -> str:
        """The running execution's lease: its token, with a TTL the worker renews."""
        return f"{self.record}:lease"

    def all(self) -> list[str]:
        """The job's own keys, first among every script's KEYS in this order
        (``SCRIPT_KEYS``, workers/store/scripts.py)."""
        return [
            self.record,
            self.heartbeat,
            self.result,
            self.partial,
            self.events,
            self.tombstone,
            self.lease,
        ]

    @classmethod
    def from_task_arg(cls, arg: str) -> JobKeys:
        """From a Celery message's argument, or a queue/due/requeue member: ``tenant:id``."""
        tenant, _, job_id = arg.partition(":")
        return cls(tenant, job_id)

    def task_arg(self) -> str:
        """What the Celery message carries: the job's identity, nothing else.
        Also the task id of every message of the job (Flower shows the job
        under it)."""
        return f"{self.tenant}:{self.job_id}"

    def message_id(self, seq: int) -> str:
        """The name of the job's ``seq``-th message (the record's ``msgs``), in
        its header (workers/broker.py): each message of a job has its own, so
        the sweep can find it exactly."""
        return f"{self.tenant}:{self.job_id}:{seq}"
