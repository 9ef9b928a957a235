"""The Lua scripts: their sources, the generated prelude, the KEYS and common
ARGV every script receives, and each script's typed reply.

Python owns every fact a script needs. The prelude that precedes each script
is rendered here from ``workers.states`` (statuses, error codes and their
retryability), ``workers.limits`` (windows and limits), the KEYS table and
the common ARGV below, then ``workers/lua/_prelude.lua`` (the shared Lua
functions). A script never spells a status, a code or a window itself.

The reply parsers raise nothing; an unknown outcome is a ``ValueError`` of
the enum (a script and its parser out of step).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, get_type_hints

from workers import keys as keyspace
from workers import limits
from workers.keys import JobKeys
from workers.registry import HIGHEST_PRIORITY
from workers.states import (
    RETRYABLE,
    TERMINAL,
    CallbackState,
    ErrorCode,
    Status,
    WebhookEvent,
)

LUA_DIR = Path(__file__).resolve().parent.parent / "lua"

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
    "write_chunk",
)

# -- KEYS -------------------------------------------------------------------

# Every script receives these keys, in this order: the job's own keys (one
# hash slot), then the shared indexes. Each entry: the Lua name, and how to
# build the key from the job's keys and the queue's name.
KeyBuilder = Callable[[JobKeys, str], str]
SCRIPT_KEYS: tuple[tuple[str, KeyBuilder], ...] = (
    ("K_RECORD", lambda job, queue: job.record),
    ("K_HB", lambda job, queue: job.heartbeat),
    ("K_RESULT", lambda job, queue: job.result),
    ("K_PARTIAL", lambda job, queue: job.partial),
    ("K_EVENTS", lambda job, queue: job.events),
    ("K_TOMB", lambda job, queue: job.tombstone),
    ("K_LEASE", lambda job, queue: job.lease),
    # The create script's is the job's queue index; any other script finds the
    # job's from its record (_prelude.lua) and gets this as the fallback.
    ("K_QUEUE", lambda job, queue: queue),
    ("K_TENANT", lambda job, queue: keyspace.tenant_index(job.tenant)),
    ("K_SEQ", lambda job, queue: keyspace.SEQUENCE),
    ("K_ACTIVE", lambda job, queue: keyspace.tenant_active(job.tenant)),
    ("K_STATS", lambda job, queue: keyspace.STATS),
    ("K_LISTED", lambda job, queue: keyspace.tenant_listed(job.tenant)),
    ("K_DUE", lambda job, queue: keyspace.DUE),
    ("K_REQUEUE", lambda job, queue: keyspace.REQUEUE),
    ("K_QUEUE_WAIT", lambda job, queue: keyspace.JOB_QUEUE_WAIT),
    ("K_DURATION", lambda job, queue: keyspace.JOB_DURATION),
    ("K_HOOKS", lambda job, queue: keyspace.HOOKS),
    ("K_HOOKS_DUE", lambda job, queue: keyspace.HOOKS_DUE),
)


# The job's own keys (one hash slot) come first; the shared indexes follow.
JOB_KEY_COUNT = len(JobKeys("t", "i").all())
INDEX_KEYS: dict[str, KeyBuilder] = dict(SCRIPT_KEYS[JOB_KEY_COUNT:])


@functools.lru_cache(maxsize=4096)
def script_keys(job: JobKeys, queue_key: str, *, cluster: bool = False) -> list[str]:
    """The KEYS of any script for ``job``, in the order the prelude names them
    (``queue_key``: a queue index, ``keyspace.queue_index``); in cluster mode
    the job's own keys only (workers/lua/_cluster.lua).

    Cached: a worker calls two or three scripts per job with the same keys,
    and a polled job is read again and again (the list is only ever read)."""
    builders = SCRIPT_KEYS[:JOB_KEY_COUNT] if cluster else SCRIPT_KEYS
    return [build(job, queue_key) for _name, build in builders]


# -- common ARGV ----------------------------------------------------------------


class CommonArgs(NamedTuple):
    """ARGV[1..4] of every script; the prelude names each field in upper case
    (``ERROR_ID``, ...), numbers as numbers. A script's own arguments follow
    and it reads them as ``ARGS[1]``, ``ARGS[2]``, ..."""

    error_id: str  # id of an error this call may create
    tomb_ttl_ms: int
    index_ttl_ms: int  # the longest a job can live
    token: str  # lease token of the calling execution ('' = not a worker's)


# -- the prelude ------------------------------------------------------------


def _lua_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _lua_set(name: str, members: frozenset[Status] | frozenset[ErrorCode]) -> str:
    entries = ", ".join(f"[{_lua_string(m.value)}] = true" for m in sorted(members))
    return f"local {name} = {{{entries}}}"


# Numbers from workers.limits that the scripts use, by their Lua name.
LUA_LIMITS: dict[str, int] = {
    "EVENTS_TTL_MS": limits.EVENTS_TTL_MS,
    "FINAL_EVENT_TTL_MS": limits.FINAL_EVENT_TTL_MS,
    "EVENTS_KEPT": limits.EVENTS_KEPT,
    "STATS_TTL_MS": limits.STATS_TTL_MS,
    "LOST_CONFIRM_MS": limits.LOST_CONFIRM_MS,
    "MAX_LOST_RESENDS": limits.MAX_LOST_RESENDS,
    "FORGET_BATCH": limits.FORGET_BATCH,
    "PROGRESS_DONE": limits.PROGRESS_DONE,
    "PROGRESS_RUNNING_MAX": limits.PROGRESS_RUNNING_MAX,
    "HIGHEST_PRIORITY": HIGHEST_PRIORITY,
}


def lua_constants() -> str:
    """Python's statuses, codes, reply tags and limits as Lua declarations: what
    any script of Jobgate's (also one kept beside its Python, as the metrics'
    are) uses instead of writing a literal of its own."""
    lines = ["-- Generated by workers/store/scripts.py: edit the Python, not this."]
    lines += [f"local STATUS_{s.name} = {_lua_string(s.value)}" for s in Status]
    lines.append(_lua_set("TERMINAL", TERMINAL))
    lines += [f"local CODE_{c.name} = {_lua_string(c.value)}" for c in ErrorCode]
    lines.append(_lua_set("RETRYABLE", RETRYABLE))
    for prefix, outcomes in REPLY_TAGS.items():
        lines += [f"local {prefix}_{o.name} = {_lua_string(o.value)}" for o in outcomes]
    lines += [f"local {name} = {value}" for name, value in LUA_LIMITS.items()]
    lines.append(f"local QUEUE_INDEX_PREFIX = {_lua_string(keyspace.QUEUE_INDEX_PREFIX)}")
    bounds = ", ".join(_lua_string(repr(bound)) for bound in limits.JOB_BUCKETS)
    lines.append(f"local JOB_BUCKETS = {{{bounds}}}")
    return "\n".join(lines) + "\n"


def observe_lua() -> str:
    """The Lua function that adds one observation to a job histogram
    (``workers/lua/_observe.lua``): the job scripts' and the metrics' own."""
    return (LUA_DIR / "_observe.lua").read_text()


def generated_prelude(cluster: bool = False) -> str:
    """The Lua declarations rendered from Python's constants, tables and ARGV.

    In cluster mode the shared indexes are names, not KEYS, and the last ARGV
    is CLUSTER_IN, a JSON object of what the store read from them before."""
    lines = [lua_constants().rstrip("\n")]
    lines.append(f"local CLUSTER = {'true' if cluster else 'false'}")
    for i, (name, _build) in enumerate(SCRIPT_KEYS, start=1):
        value = _lua_string(name) if cluster and name in INDEX_KEYS else f"KEYS[{i}]"
        lines.append(f"local {name} = {value}")
    hints = get_type_hints(CommonArgs)
    for i, field in enumerate(CommonArgs._fields, start=1):
        numeric = hints[field] is int
        value = f"tonumber(ARGV[{i}])" if numeric else f"ARGV[{i}]"
        lines.append(f"local {field.upper()} = {value}")
    first = len(CommonArgs._fields) + 1
    if cluster:
        names = ", ".join(_lua_string(name) for name in INDEX_KEYS)
        lines.append(f"local INDEX_NAMES = {{{names}}}")
        lines.append("local CLUSTER_IN = cjson.decode(ARGV[#ARGV])")
        lines.append(f"local ARGS = {{unpack(ARGV, {first}, #ARGV - 1)}}")
    else:
        lines.append(f"local ARGS = {{unpack(ARGV, {first})}}")
    return "\n".join(lines) + "\n"


def lua_source(name: str, cluster: bool = False) -> str:
    """The full text of script ``name``: generated prelude, shared Lua, its own.

    In cluster mode the cluster shim (workers/lua/_cluster.lua) comes before
    the shared Lua, and the script's own body runs as a function whose reply
    is returned with the index commands it deferred: {reply, DEFERRED}."""
    shared = (LUA_DIR / "_prelude.lua").read_text()
    own = (LUA_DIR / f"{name}.lua").read_text()
    if not cluster:
        return generated_prelude() + observe_lua() + shared + "\n" + own
    shim = (LUA_DIR / "_cluster.lua").read_text()
    body = f"local function script_body()\n{own}\nend\nreturn {{script_body(), DEFERRED}}\n"
    return generated_prelude(cluster=True) + shim + observe_lua() + shared + "\n" + body


# -- replies ----------------------------------------------------------------


class Tag(enum.StrEnum):
    """The first element of a reply that is neither a status nor an outcome below."""

    OK = "ok"  # read_job: the record follows
    RUN = "run"  # start_job: the job to run follows
    SKIP = "skip"  # start_job: not queued, its status follows
    LEASE_LOST = "LEASE_LOST"  # the caller's lease was taken over: it writes nothing


class Absent(enum.StrEnum):
    """Why a job a script was asked about is not there."""

    MISSING = "missing"  # never issued, or long forgotten (404)
    GONE = "gone"  # its tombstone is left (410)


class CreateOutcome(enum.StrEnum):
    """create_job.lua's first reply element."""

    CREATED = "created"
    EXISTS = "exists"  # same type and params: an idempotent replay
    CONFLICT = "conflict"  # same id, other payload
    TOMBSTONED = "tombstoned"  # the id was used by a job that has gone
    TOO_MANY = "too_many"  # the tenant has JOBGATE_TENANT_MAX_ACTIVE live jobs


class CancelOutcome(enum.StrEnum):
    """cancel_job.lua's reply."""

    CANCELLED = "cancelled"  # was live, now FAILED/CANCELLED_BY_USER
    DELETED = "deleted"  # was terminal: record and result deleted
    MISSING = "missing"
    GONE = "gone"


class LostOutcome(enum.StrEnum):
    """lost_message.lua's reply."""

    SKIP = "skip"  # the job moved on
    SUSPECT = "suspect"  # missing once: look again later
    REQUEUED = "requeued"  # lost: queued for a resend
    FAILED = "failed"  # lost too often: FAILED/WORKER_LOST


class RunEnd(enum.StrEnum):
    """How an execution ended short of its job's end (the record's ``run:<n>``,
    the ``jobgate_jobs_requeued`` label); an execution that ended its job ends
    with the job's status."""

    LOST = "lost"  # its worker stopped renewing the lease
    HANDED_BACK = "handed_back"  # its worker shut down and gave the job back


class ResendReason(enum.StrEnum):
    """Why the sweep sent a job's message again (``jobgate_messages_resent`` label)."""

    REQUEUED = "requeued"  # after a lost execution or a hand-back
    LOST = "lost"  # the message itself was lost


class Applied(NamedTuple):
    """The reply of fail_job, finish_job and hand_back: the job's status after
    the call (or 'missing', 'gone', 'LEASE_LOST'), and whether the call changed it.

    Its third element, where a script has it, is ``hooked`` (1: a webhook
    delivery was queued: JobStore._hooked). finish_job also tells, when it
    applied, the seconds the job ran and whether it counted them in the
    duration histogram (it always does, unless the record had gone)."""

    status: str
    applied: bool
    seconds: float | None = None
    counted: bool = False

    @classmethod
    def parse(cls, reply: list[Any]) -> Applied:
        if len(reply) < 5:
            return cls(str(reply[0]), bool(reply[1]))
        seconds = float(reply[3]) if reply[3] else None
        return cls(str(reply[0]), bool(reply[1]), seconds, bool(reply[4]))


class StartReply(NamedTuple):
    """start_job.lua's reply: the job to run, or the status that kept it from running."""

    run: bool
    status: str
    type: str = ""
    params_json: str = ""
    attempt: int = 0
    request_id: str = ""

    @classmethod
    def parse(cls, reply: list[Any]) -> StartReply:
        if reply[0] == Tag.RUN:
            _, job_type, params_json, attempt, request_id = reply
            return cls(
                True, Status.RUNNING.value, job_type, params_json, int(attempt), str(request_id)
            )
        status = reply[1] if reply[0] == Tag.SKIP else reply[0]
        return cls(False, str(status))


class ReadReply(NamedTuple):
    """read_job.lua's reply ('ok'), and create_job.lua's after 'created'."""

    fields: dict[str, str]
    result_json: str | None
    last_event_id: str
    now_ms: int
    queue_position: int | None

    @classmethod
    def parse(cls, reply: list[Any]) -> ReadReply | Absent:
        if reply[0] in (Absent.MISSING, Absent.GONE):
            return Absent(reply[0])
        return cls.after_tag(reply[1:])

    @classmethod
    def after_tag(cls, fields: list[Any]) -> ReadReply:
        """From what follows read_job's 'ok' (or create_job's 'created')."""
        flat, result_json, last_event_id, now, position = fields
        return cls(
            fields=dict(zip(flat[::2], flat[1::2], strict=True)),
            result_json=result_json or None,
            last_event_id=str(last_event_id),
            now_ms=int(now),
            queue_position=None if position is None else int(position),
        )


class Chunks(enum.StrEnum):
    """finish_job.lua's ``chunks`` argument: where a chunked result is."""

    PARTIAL = "partial"  # the partial rows' chunks are the result
    WRITTEN = "written"  # write_chunk wrote them


# The reply tags the prelude names, by prefix: ABSENT_GONE = 'gone', ...
REPLY_TAGS: dict[str, type[enum.StrEnum]] = {
    "TAG": Tag,
    "ABSENT": Absent,
    "CREATE": CreateOutcome,
    "CANCEL": CancelOutcome,
    "LOST": LostOutcome,
    "RUN": RunEnd,
    "RESEND": ResendReason,
    "CHUNKS": Chunks,
    "EVENT": WebhookEvent,
    "CALLBACK": CallbackState,
}
