"""Redis memory: bytes per terminal job with a small result, and what is left after expiry.

Per repetition, a new redis-server and a worker (concurrency 2) with
``JOBGATE_RETENTION_MIN=1`` and ``JOBGATE_TOMBSTONE_TTL=2``:

1. 20 warm-up jobs with retention 1 s run and expire (Lua scripts loaded,
   Celery's bindings and the shared indexes exist), then ``used_memory`` M0;
2. 10,000 ``demo.count`` ``n=1`` jobs (result ``{"columns": [...], "rows":
   [[0, 0]]}``) with retention ``RETENTION`` are created in-process while the
   worker runs them; when the broker is drained and every record is DONE,
   and ``SETTLE`` seconds more (what a DONE job keeps for its retention, not
   what its last transition keeps for a moment; the figure read at once is
   in the notes), ``used_memory`` M1: bytes per job = (M1 - M0) / N;
3. after the retention and the tombstone TTL have passed and Redis has expired
   the keys, ``used_memory`` M2: the leftover is M2 - M0 (target: back to the
   baseline, i.e. under 1 % of M1 - M0), with the keys that hold it.

The clients connected (the worker, this process) are the same at M0, M1 and
M2. While one repetition waits for its expiry, the next one (on its own
redis-server) already runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import redis

from bench.common import (
    BenchError,
    BenchRedis,
    Proc,
    Row,
    RunContext,
    Stack,
    base_settings,
    log,
    spread,
    stack,
    start_jobgate_worker,
    wait_until,
)
from bench.scenarios.drain import jobgate_app, statuses, submit_jobgate
from jobgate.redis_server import RedisServer
from workers.broker import queue_lists
from workers.config import Settings
from workers.keys import JobKeys

JOBS = 10_000
# Seconds: longer than a repetition's load phase, also on a loaded machine
# (10,000 jobs at 100 jobs/s outlive a 60 s retention).
RETENTION = 180
TOMBSTONE_TTL = 2
WARM_UP = 20
SETTLE = 5.0  # seconds after the last job ended before M1 is read
LEFTOVER_SHARE = 0.01  # "back to the baseline": under 1 % of the growth


@dataclass
class Rep:
    index: int
    redis: BenchRedis
    worker: Proc
    settings: Settings
    m0: int = 0
    m1: int = 0
    m1_at_once: int = 0
    m1_live: int = 0
    expired_streams: int = 0
    m2: int = 0
    keys0: int = 0
    expires_at: float = 0.0
    sample: str = ""
    leftover_keys: list[str] = field(default_factory=list)

    @property
    def per_job(self) -> float:
        return (self.m1 - self.m0) / JOBS

    @property
    def per_job_live(self) -> float:
        return (self.m1_live - self.m0) / JOBS

    @property
    def per_job_at_once(self) -> float:
        return (self.m1_at_once - self.m0) / JOBS

    @property
    def leftover(self) -> int:
        return self.m2 - self.m0


def settle_memory(client: redis.Redis) -> int:
    time.sleep(0.5)
    return int(client.info("memory")["used_memory"])


def wait_drained(r: BenchRedis, queue: str, timeout: float) -> None:
    def drained() -> bool:
        pipe = r.client.pipeline(transaction=False)
        for name in queue_lists(queue):  # every priority list
            pipe.llen(name)
        pipe.hlen("unacked")
        *waiting, unacked = pipe.execute()
        return sum(int(n) for n in waiting) == 0 and int(unacked) == 0

    wait_until(drained, timeout, "the worker to drain the queue", step=0.1)


def run_jobs(rep: Rep, prefix: str, count: int, retention: int) -> list[JobKeys]:
    app = jobgate_app(rep.settings)
    jobs = submit_jobgate(app, count, prefix, retention=retention)
    wait_drained(rep.redis, rep.settings.queue, 300)
    # An empty broker may still have the last message in flight (kombu pops
    # it before it records it as unacked): wait for the records themselves.
    last: dict[str, int] = {}

    def all_done() -> bool:
        last.clear()
        last.update(statuses(rep.redis.client, jobs))
        return last.get("DONE") == count

    try:
        wait_until(all_done, 30, "every job to be DONE", step=0.2)
    except BenchError as exc:
        raise BenchError(f"memory: the jobs are {last}, not all DONE") from exc
    return jobs


def sample_sizes(client: redis.Redis, keys: JobKeys) -> str:
    parts = []
    for name, key in (
        ("record", keys.record),
        ("result", keys.result),
        ("events", keys.events),
        ("tombstone", keys.tombstone),
    ):
        size = client.memory_usage(key, samples=0)
        parts.append(f"{name} {size or 0} B")
    return ", ".join(parts)


def load(ctx: RunContext, s: Stack, index: int) -> Rep:
    r = s_redis(s)
    settings = base_settings(
        r.url,
        ctx.queue(f"memory{index}"),
        retention_min=1,
        tombstone_ttl=TOMBSTONE_TTL,
    )
    worker = start_jobgate_worker(s, settings, r.client, ctx.log_dir, f"jobgate-memory{index}")
    rep = Rep(index, r, worker, settings)
    run_jobs(rep, f"warm{index}", WARM_UP, retention=1)
    wait_until(lambda: _no_job_keys(r.client), 30, "the warm-up jobs to expire", step=0.2)
    rep.keys0 = int(r.client.dbsize())
    rep.m0 = settle_memory(r.client)
    jobs = run_jobs(rep, f"mem{index}", JOBS, retention=RETENTION)
    done_at = time.monotonic()
    rep.m1_at_once = settle_memory(r.client)
    rep.sample = sample_sizes(r.client, jobs[-1])
    # What a terminal job holds for its retention, not what the last
    # transitions hold for a moment (e.g. a final event kept a few seconds).
    time.sleep(max(0.0, done_at + SETTLE - time.monotonic()))
    rep.m1 = settle_memory(r.client)
    # Redis reclaims expired keys lazily and by sampling (it tolerates ~10 %
    # of expired keys among those with a TTL): a SCAN touches every key and
    # so reclaims the ones already expired. What remains is held by live keys.
    rep.expired_streams = reclaim_expired(r.client)
    rep.m1_live = settle_memory(r.client)
    rep.expires_at = time.monotonic() + RETENTION + TOMBSTONE_TTL
    log(
        f"memory rep {index + 1}: {rep.per_job:,.0f} bytes per DONE job "
        f"({rep.per_job_at_once:,.0f} at once, {rep.per_job_live:,.0f} once the "
        f"{rep.expired_streams:,} expired keys Redis still held were reclaimed; {rep.sample})"
    )
    return rep


def reclaim_expired(client: redis.Redis) -> int:
    """SCAN the whole keyspace (which drops keys already expired); returns how
    many events streams were among the keys Redis still held."""
    before = int(client.info("keyspace").get("db0", {}).get("keys", 0))
    for _ in client.scan_iter(count=1000):
        pass
    after = int(client.info("keyspace").get("db0", {}).get("keys", 0))
    return before - after


def _no_job_keys(client: redis.Redis) -> bool:
    for _ in client.scan_iter(match="jobgate:job:*", count=1000):
        return False
    return True


def expire(rep: Rep) -> None:
    """Wait out retention + tombstone, then for Redis to have expired the keys."""
    client = rep.redis.client
    time.sleep(max(0.0, rep.expires_at - time.monotonic()))
    # DBSIZE does not touch keys (no lazy expiry on our behalf): Redis's own
    # active expiry must remove them.
    try:
        wait_until(lambda: client.dbsize() <= rep.keys0, 60, "the jobs' keys to expire", 0.5)
    except BenchError as exc:
        log(f"memory rep {rep.index + 1}: {exc}")
    rep.m2 = settle_memory(client)
    big = []
    for key in client.scan_iter(count=1000):
        size = client.memory_usage(key, samples=0) or 0
        if size >= 1024:
            kind = str(client.type(key))
            length = _length(client, key, kind)
            big.append((size, f"{key} ({kind}, {length:,} entries, {size:,} B)"))
    rep.leftover_keys = [text for _, text in sorted(big, reverse=True)[:3]]
    log(
        f"memory rep {rep.index + 1}: {rep.leftover:,} bytes left after expiry; "
        f"{'; '.join(rep.leftover_keys) or 'no key over 1 KiB'}"
    )


def _length(client: redis.Redis, key: str, kind: str) -> int:
    lengths: dict[str, Any] = {
        "zset": client.zcard,
        "hash": client.hlen,
        "set": client.scard,
        "list": client.llen,
        "stream": client.xlen,
    }
    return int(lengths[kind](key)) if kind in lengths else 1


def s_redis(s: Stack) -> BenchRedis:
    """A fresh redis-server, stopped by ``s`` (after what was started later)."""
    server = RedisServer().start()
    s.push(server.close)
    return BenchRedis(server)


def run(ctx: RunContext) -> list[Row]:
    reps: list[Rep] = []
    with stack() as s:
        for index in range(ctx.reps):
            reps.append(load(ctx, s, index))
        for rep in reps:
            expire(rep)
            rep.worker.check_alive()
    per_job = [rep.per_job for rep in reps]
    leftover = [float(rep.leftover) for rep in reps]
    growth = spread([float(rep.m1 - rep.m0) for rep in reps]).median
    left = spread(leftover)
    return [
        Row(
            f"Redis memory, {JOBS:,} DONE jobs",
            "bytes per terminal job",
            spread(per_job),
            None,
            f"{spread(per_job).median / 1024:.2f} KiB",
            "≤ 1 KiB",
            spread(per_job).median <= 1024,
            f"read {SETTLE:g} s after the last job ended; read at once: "
            f"{spread([rep.per_job_at_once for rep in reps]).text()} B per job; after a SCAN "
            f"reclaimed the keys already expired that Redis still held "
            f"({spread([float(rep.expired_streams) for rep in reps]).text()} keys): "
            f"{spread([rep.per_job_live for rep in reps]).text()} B per job; one job's keys "
            f"(MEMORY USAGE, at once): {reps[-1].sample}; retention {RETENTION} s",
            fmt="{:,.0f}",
        ),
        Row(
            f"Redis memory after expiry (retention {RETENTION} s + tombstone {TOMBSTONE_TTL} s)",
            "bytes left over (M2 - M0)",
            left,
            None,
            f"{left.median / JOBS:,.1f} B per job, {left.median / growth:.1%} of the growth",
            "back to baseline (< 1 % of growth)",
            left.median <= LEFTOVER_SHARE * growth,
            "largest keys left: " + ("; ".join(reps[-1].leftover_keys) or "none over 1 KiB"),
            fmt="{:,.0f}",
        ),
    ]
