"""HTTP request metrics, counted by every API process into the same Redis hashes.

Each request adds to this process's pending counts (a lock and a few dict
updates, no I/O); a background thread flushes them to Redis every
``FLUSH_INTERVAL`` seconds in one pipeline (HINCRBY per distinct series, not
per request), and a scrape flushes its own process's first. So the numbers are
right across gunicorn processes and machines, at most one interval late, and
need no prometheus_client multiprocess files to clean up.

The ``route`` label is the Flask URL rule (``/v1/jobs/<job_id>``), never the
raw path, and ``unmatched`` for a path no rule serves; methods outside the
HTTP set count as ``other``: bounded label values whatever clients send.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import Counter

import redis
from flask import Flask, Response, g, request
from redis.exceptions import RedisClusterException

from workers import keys as keyspace
from workers.job_metrics import HTTP_BUCKETS, METRICS_TTL_MS, SEPARATOR, bucket_of

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


class HttpMetrics:
    """This process's pending HTTP counts and the thread that flushes them."""

    def __init__(self, client: redis.Redis, flush_interval: float = FLUSH_INTERVAL) -> None:
        self.client = client
        self.flush_interval = flush_interval
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._buckets: Counter[str] = Counter()
        self._sums: dict[str, float] = {}
        self._flusher_pid = 0  # the process whose thread flushes (a fork has none)

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        series = f"{method}{SEPARATOR}{route}"
        bucket = f"{series}{SEPARATOR}{bucket_of(seconds, HTTP_BUCKETS)}"
        with self._lock:
            self._requests[f"{series}{SEPARATOR}{status}"] += 1
            self._buckets[bucket] += 1
            field = f"{series}{SEPARATOR}sum"
            self._sums[field] = self._sums.get(field, 0.0) + seconds
        if self._flusher_pid != os.getpid():
            self._start_flusher()

    def flush(self) -> None:
        """Write the pending counts to Redis; on failure they wait for the next flush."""
        with self._lock:
            requests, buckets, sums = self._requests, self._buckets, self._sums
            self._requests, self._buckets, self._sums = Counter(), Counter(), {}
        if not requests:
            return
        pipe = self.client.pipeline(transaction=False)
        for field, count in requests.items():
            pipe.hincrby(keyspace.HTTP_REQUESTS, field, count)
        for field, count in buckets.items():
            pipe.hincrby(keyspace.HTTP_DURATION, field, count)
        for field, total in sums.items():
            pipe.hincrbyfloat(keyspace.HTTP_DURATION, field, total)
        pipe.pexpire(keyspace.HTTP_REQUESTS, METRICS_TTL_MS)
        pipe.pexpire(keyspace.HTTP_DURATION, METRICS_TTL_MS)
        try:
            pipe.execute()
        except (redis.RedisError, RedisClusterException) as exc:
            log.warning("HTTP metrics not flushed, kept for the next try: %s", exc)
            with self._lock:
                self._requests.update(requests)
                self._buckets.update(buckets)
                for field, total in sums.items():
                    self._sums[field] = self._sums.get(field, 0.0) + total

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()
        thread = threading.Thread(target=self._flush_forever, name="http-metrics", daemon=True)
        thread.start()
        atexit.register(self.flush)

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.flush_interval)
            try:
                self.flush()
            except Exception:  # never let the thread die: the counts would stop
                log.exception("HTTP metrics flush failed")


def install(app: Flask, client: redis.Redis) -> HttpMetrics:
    """Count every request of ``app``: its clock starts before any other hook."""
    metrics = HttpMetrics(client)

    def start_clock() -> None:
        g.http_started = time.perf_counter()

    def count(response: Response) -> Response:
        started = g.get("http_started")
        if started is not None:
            rule = request.url_rule
            method = request.method if request.method in METHODS else "other"
            route = rule.rule if rule is not None else UNMATCHED
            metrics.record(method, route, response.status_code, time.perf_counter() - started)
        return response

    # First of the before-request hooks: one that answers early (401, 429)
    # stops the hooks after it, and those requests count too.
    app.before_request_funcs.setdefault(None, []).insert(0, start_clock)
    app.after_request(count)
    return metrics
