"""Histograms kept in Redis, so that every process on every machine adds to
the same numbers, and the end of a job as its record tells it.

A histogram is a hash (keys.py): one observation is one HINCRBY of the one
bucket the value falls in (``<labels>|<upper bound>``) and one HINCRBYFLOAT
of the sum; ``histograms`` makes Prometheus's cumulative buckets at scrape
time. The bucket bounds are Python's (here) and handed to Lua.

Jobs: the worker observes a job's queue wait (created → started) when its
first execution starts, and its duration (started → finished, labelled with
the final status) when its execution ends, reading both times from the record
(Redis's clock); the record marks the duration as counted, so a job is counted
once whoever ends it.

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
from workers.store.scripts import lua_constants

# Seconds. Jobs run from milliseconds to hours; an HTTP request (a long poll
# included) from milliseconds to a minute.
JOB_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
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


# The one bucket of a value. ARGV of the calling script: ..., the hash's TTL,
# then the bucket bounds (ascending), from argument ``first`` on.
_OBSERVE = """
local function observe(hash, labels, value, first)
  local le = '+Inf'
  for i = first, #ARGV do
    if value <= tonumber(ARGV[i]) then
      le = ARGV[i]
      break
    end
  end
  redis.call('HINCRBY', hash, labels .. '|' .. le, 1)
  redis.call('HINCRBYFLOAT', hash, labels .. '|sum', value)
  redis.call('PEXPIRE', hash, ARGV[first - 1])
end
"""

# KEYS: the job's record, the queue-wait histogram. ARGV: TTL, bounds.
# The job was started (start_job.lua): created → started, by type.
_QUEUE_WAIT_BODY = """
local f = redis.call('HMGET', KEYS[1], 'type', 'created', 'started')
if not (f[1] and f[2] and f[3]) then
  return 0
end
observe(KEYS[2], f[1], (tonumber(f[3]) - tonumber(f[2])) / 1000, 2)
return 1
"""
OBSERVE_QUEUE_WAIT_LUA = lua_constants() + _OBSERVE + _QUEUE_WAIT_BODY

# KEYS: the job's record, the duration histogram. ARGV: TTL, bounds.
# Returns {status or false, error JSON or false, seconds run or false, 1 when
# this call counted it}; a terminal job that had started is counted once (the
# record's 'observed').
_ENDED_BODY = """
local f = redis.call('HMGET', KEYS[1], 'status', 'error', 'type', 'started', 'finished',
  'observed')
local status = f[1]
if not TERMINAL[status] then
  return {status or false, false, false, 0}
end
local seconds, counted = false, 0
if f[4] and f[5] then
  seconds = (tonumber(f[5]) - tonumber(f[4])) / 1000
  if not f[6] then
    redis.call('HSET', KEYS[1], 'observed', 1)
    observe(KEYS[2], f[3] .. '|' .. status, seconds, 2)
    counted = 1
  end
end
return {status, f[2] or false, seconds and tostring(seconds), counted}
"""
JOB_ENDED_LUA = lua_constants() + _OBSERVE + _ENDED_BODY

# Redis Cluster: the histogram is not in the job's slot. The script gets the
# record alone, returns {its reply, the bucket and sum fields it would have
# added to}, and the histogram is written in a step of its own (a crash
# between the two loses one observation, never counts one twice).
_OBSERVE_DEFERRED = """
local OBSERVED = {}
local function observe(hash, labels, value, first)
  local le = '+Inf'
  for i = first, #ARGV do
    if value <= tonumber(ARGV[i]) then
      le = ARGV[i]
      break
    end
  end
  OBSERVED = {labels .. '|' .. le, labels .. '|sum', tostring(value)}
end
"""


def _deferred(body: str) -> str:
    return (
        lua_constants()
        + _OBSERVE_DEFERRED
        + f"local function script_body()\n{body}\nend\nreturn {{script_body(), OBSERVED}}\n"
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
    """The worker's side: observe a job's queue wait and duration."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.cluster = isinstance(client, redis.RedisCluster)
        wait_lua, ended_lua = OBSERVE_QUEUE_WAIT_LUA, JOB_ENDED_LUA
        if self.cluster:
            wait_lua, ended_lua = _deferred(_QUEUE_WAIT_BODY), _deferred(_ENDED_BODY)
        self._queue_wait = client.register_script(wait_lua)
        self._ended = client.register_script(ended_lua)
        self._args: list[str | int] = [METRICS_TTL_MS, *(repr(b) for b in JOB_BUCKETS)]

    def _observe(self, script: Any, keys: JobKeys, histogram: str) -> Any:
        if not self.cluster:
            return script(keys=[keys.record, histogram], args=self._args)
        reply, observed = script(keys=[keys.record], args=self._args)
        if observed:
            bucket, total, value = observed
            pipe = self.client.pipeline(transaction=False)
            pipe.hincrby(histogram, bucket, 1)
            pipe.hincrbyfloat(histogram, total, float(value))
            pipe.pexpire(histogram, METRICS_TTL_MS)
            pipe.execute()
        return reply

    def started(self, keys: JobKeys) -> None:
        """The job's first execution has started: observe how long it waited."""
        self._observe(self._queue_wait, keys, keyspace.JOB_QUEUE_WAIT)

    def ended(self, keys: JobKeys) -> JobEnd:
        """An execution of the job ended: how the job stands, its duration
        observed if it is now DONE or FAILED."""
        reply: Any = self._observe(self._ended, keys, keyspace.JOB_DURATION)
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
