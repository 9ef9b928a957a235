"""Histograms kept in Redis, so that every process on every machine adds to
the same numbers, and the end of a job as its record tells it.

A histogram is a hash (keys.py): one observation is one HINCRBY of the one
bucket the value falls in (``<labels>|<upper bound>``) and one HINCRBYFLOAT
of the sum; ``histograms`` makes Prometheus's cumulative buckets at scrape
time. The bucket bounds are Python's (here) and handed to Lua.

Jobs: a job's queue wait (created → started) is observed by start_job.lua
when its first execution starts, and its duration (started → finished,
labelled with the final status) by finish_job.lua when the worker ends it, in
the same script call as the transition (workers/lua/_observe.lua); a job that
someone else ended (cancelled, timed out, lost) is observed by the first
``JobMetrics.ended`` after it (the worker's, or the sweep's). Both times are
the record's (Redis's clock); the record marks the duration as counted, so a
job is counted once whoever ends it.

Errors: a ``redis.RedisError`` from Redis goes to the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from workers import keys as keyspace
from workers import limits
from workers.keys import JobKeys
from workers.states import ErrorCode, Status
from workers.store.scripts import lua_constants, observe_lua

# Seconds. Jobs run from milliseconds to hours (the bounds are workers.limits',
# handed to Lua by the generated prelude); an HTTP request (a long poll
# included) from milliseconds to a minute.
JOB_BUCKETS = limits.JOB_BUCKETS
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
INF = "+Inf"
SEPARATOR = "|"
# How long a histogram hash outlives its last observation (as the job counters).
METRICS_TTL_MS = limits.STATS_TTL_MS


def bucket_of(value: float, bounds: Iterable[float]) -> str:
    """The field name of the one bucket ``value`` falls in."""
    for bound in bounds:
        if value <= bound:
            return repr(bound)
    return INF


# KEYS: the job's record, the duration histogram.
# Returns {status or false, error JSON or false, seconds run or false, 1 when
# this call counted it}; a terminal job that had started is counted once (the
# record's 'observed', which finish_job.lua sets when the worker ends the job).
_ENDED_BODY = """
local f = redis.call('HMGET', K_RECORD, 'status', 'error')
local status = f[1]
if not TERMINAL[status] then
  return {status or false, false, false, 0}
end
local seconds, counted = observe_end(status)
return {status, f[2] or false, seconds, counted}
"""
JOB_ENDED_LUA = (
    lua_constants()
    + "local K_RECORD, K_DURATION = KEYS[1], KEYS[2]\n"
    + observe_lua()
    + _ENDED_BODY
)

# Redis Cluster: the histogram is not in the job's slot. The script gets the
# record alone; its commands on the histogram are collected, not run, and
# returned with its reply ({reply, commands}); the store writes them in a step
# of its own (a crash between the two loses one observation, never counts one
# twice: the record's 'observed' is set first).
JOB_ENDED_CLUSTER_LUA = (
    lua_constants()
    + "local K_RECORD, K_DURATION = KEYS[1], 'K_DURATION'\n"
    + """local SERVER, DEFERRED = redis, {}
local redis = setmetatable({
  call = function(cmd, key, ...)
    if key ~= K_DURATION then
      return SERVER.call(cmd, key, ...)
    end
    local op = {cmd}
    for _, arg in ipairs({...}) do
      if type(arg) == 'number' and arg ~= math.floor(arg) then
        arg = string.format('%.17g', arg)
      end
      table.insert(op, arg)
    end
    table.insert(DEFERRED, op)
    return 1
  end,
}, {__index = SERVER})
"""
    + observe_lua()
    + f"local function script_body()\n{_ENDED_BODY}\nend\nreturn {{script_body(), DEFERRED}}\n"
)


@dataclass(frozen=True)
class JobEnd:
    """How a job stands after an execution of it ended, from its record."""

    status: Status | None
    code: ErrorCode | None = None
    message: str = ""
    seconds: float | None = None
    # This look counted its duration: the first to see it ended.
    first_seen: bool = False


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class JobMetrics:
    """How a job ended, its duration observed if nobody had (the worker's
    side after an execution that did not end the job itself, the sweep's)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.cluster = isinstance(client, redis.RedisCluster)
        self._ended = client.register_script(
            JOB_ENDED_CLUSTER_LUA if self.cluster else JOB_ENDED_LUA
        )

    def ended(self, keys: JobKeys) -> JobEnd:
        """An execution of the job ended: how the job stands, its duration
        observed if it is now DONE or FAILED."""
        reply: Any
        if self.cluster:
            reply, deferred = self._ended(keys=[keys.record])
            if deferred:
                pipe = self.client.pipeline(transaction=False)
                for command, *args in deferred:
                    pipe.execute_command(command, keyspace.JOB_DURATION, *args)  # type: ignore[no-untyped-call]
                pipe.execute()
        else:
            reply = self._ended(keys=[keys.record, keyspace.JOB_DURATION])
        status_raw, error_raw, seconds_raw, counted = reply
        if not status_raw:
            return JobEnd(None)
        status = Status(_text(status_raw))
        seconds = float(_text(seconds_raw)) if seconds_raw else None
        if not error_raw:
            return JobEnd(status, seconds=seconds, first_seen=bool(counted))
        error = orjson.loads(error_raw)
        code = ErrorCode(error.get("code", ErrorCode.INTERNAL_ERROR.value))
        return JobEnd(status, code, str(error.get("message", "")), seconds, bool(counted))

    def due_now(self, limit: int) -> list[JobKeys]:
        """The jobs a sweep is about to settle (their clock is due)."""
        seconds, micros = self.client.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        members: Any = self.client.zrangebyscore(keyspace.DUE, "-inf", now_ms, 0, limit)
        return [JobKeys.from_task_arg(_text(member)) for member in members]


# -- scrape time --------------------------------------------------------------


@dataclass(frozen=True)
class Histogram:
    """One labelled series: cumulative buckets (bound text → count) and sum."""

    labels: tuple[str, ...]
    buckets: list[tuple[str, float]]
    total: float


def histograms(raw: dict[Any, Any], bounds: Iterable[float], arity: int) -> Iterator[Histogram]:
    """A histogram hash as Prometheus series (``arity`` labels each)."""
    per_labels: dict[tuple[str, ...], dict[str, float]] = {}
    for field, value in raw.items():
        *labels, le = _text(field).split(SEPARATOR)
        if len(labels) != arity:
            continue  # a label value holding the separator: never written by Jobgate
        per_labels.setdefault(tuple(labels), {})[le] = float(_text(value))
    for label_values, counts in sorted(per_labels.items()):
        cumulative = 0.0
        buckets = []
        for bound in [*(repr(b) for b in bounds), INF]:
            cumulative += counts.get(bound, 0.0)
            buckets.append((bound, cumulative))
        yield Histogram(label_values, buckets, counts.get("sum", 0.0))
