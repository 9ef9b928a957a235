"""GET /metrics: Prometheus text, from Redis at scrape time.

The job counters are kept in Redis by the same Lua scripts that make the
transitions (``jobgate:stats``), so every API process, on any machine, reports
the same numbers and nothing needs prometheus_client's multiprocess files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from app.http_metrics import HttpMetrics
from workers import keys as keyspace
from workers import limits
from workers.errors import BackendUnavailable
from workers.job_metrics import HTTP_BUCKETS, JOB_BUCKETS, SEPARATOR, histograms
from workers.states import Status
from workers.store import JobStore


@dataclass(frozen=True)
class OperatorFigures:
    """What the SRE metrics are made of, read in one MULTI (one consistent
    snapshot): the histogram hashes, the queue index's head, the live jobs."""

    job_duration: dict[Any, Any]
    queue_wait: dict[Any, Any]
    http_requests: dict[Any, Any]
    http_duration: dict[Any, Any]
    oldest_age: float
    queued: int
    running: int


def read_figures(client: redis.Redis, queue: str) -> OperatorFigures:
    """RUNNING is derived, not counted twice: every live job is in the due set
    (its lease or its clocks), every INITIALIZED one also in the queue index."""
    index = keyspace.queue_index(queue)
    # One snapshot where one Redis holds it all; a Cluster has no transaction
    # across slots and no TIME in a pipeline.
    cluster = isinstance(client, redis.RedisCluster)
    pipe = client.pipeline(transaction=not cluster)
    pipe.hgetall(keyspace.JOB_DURATION)
    pipe.hgetall(keyspace.JOB_QUEUE_WAIT)
    pipe.hgetall(keyspace.HTTP_REQUESTS)
    pipe.hgetall(keyspace.HTTP_DURATION)
    pipe.zrange(index, 0, 0, withscores=True)
    pipe.zcard(index)
    pipe.zcard(keyspace.DUE)
    if cluster:
        replies = [*pipe.execute(), client.time()]
    else:
        pipe.time()
        replies = pipe.execute()
    duration, wait, requests, http_duration, head, queued, live, (secs, micros) = replies
    now_ms = int(secs) * 1000 + int(micros) // 1000
    # An index score is the enqueue time in ms times 1000 plus a sequence.
    oldest = max(0.0, (now_ms - float(head[0][1]) // 1000) / 1000) if head else 0.0
    return OperatorFigures(
        duration, wait, requests, http_duration, oldest, int(queued), max(0, live - queued)
    )


def _histogram(
    name: str, doc: str, labels: list[str], raw: dict[Any, Any], bounds: Iterable[float]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for series in histograms(raw, bounds, len(labels)):
        family.add_metric(list(series.labels), series.buckets, series.total)
    return family


def operator_metrics(figures: OperatorFigures, queue: str) -> Iterator[Metric]:
    """The metrics an SRE alerts on (README, "Metrics and alerts")."""
    yield _histogram(
        "jobgate_job_duration_seconds",
        "Jobs from started to finished, by type and final status.",
        ["type", "status"],
        figures.job_duration,
        JOB_BUCKETS,
    )
    yield _histogram(
        "jobgate_job_queue_wait_seconds",
        "Jobs from created to their first start, by type.",
        ["type"],
        figures.queue_wait,
        JOB_BUCKETS,
    )
    oldest = GaugeMetricFamily(
        "jobgate_queue_oldest_job_age_seconds",
        "Age of the longest-waiting queued job (0 when none waits).",
        labels=["queue"],
    )
    oldest.add_metric([queue], figures.oldest_age)
    yield oldest
    active = GaugeMetricFamily(
        "jobgate_jobs_active", "Jobs not finished yet, by status.", labels=["status"]
    )
    active.add_metric([Status.INITIALIZED.value], figures.queued)
    active.add_metric([Status.RUNNING.value], figures.running)
    yield active
    requests = CounterMetricFamily(
        "jobgate_http_requests",
        "HTTP requests answered, by method, route (the URL rule) and status.",
        labels=["method", "route", "status"],
    )
    for field, value in sorted(figures.http_requests.items()):
        labels = str(field).split(SEPARATOR)
        if len(labels) == 3:
            requests.add_metric(labels, float(value))
    yield requests
    yield _histogram(
        "jobgate_http_request_duration_seconds",
        "HTTP request durations, by method and route (the URL rule).",
        ["method", "route"],
        figures.http_duration,
        HTTP_BUCKETS,
    )


class JobgateCollector(Collector):
    def __init__(self, store: JobStore, http: HttpMetrics | None = None) -> None:
        self.store = store
        self.http = http

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("jobgate_redis_up", "1 when Redis answered this scrape.")
        try:
            snapshot = self.store.metrics_snapshot()
        except BackendUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        stats: dict[str, int] = snapshot["stats"]
        submitted = CounterMetricFamily("jobgate_jobs_submitted", "Jobs accepted.")
        submitted.add_metric([], stats.get("submitted", 0))
        yield submitted
        finished = CounterMetricFamily(
            "jobgate_jobs_finished",
            "Jobs that ended, by status and error code.",
            labels=["status", "code"],
        )
        for field, value in sorted(stats.items()):
            if field.startswith("finished:"):
                _, status, code = field.split(":", 2)
                finished.add_metric([status, code], value)
        yield finished
        requeued = CounterMetricFamily(
            "jobgate_jobs_requeued",
            "Executions given back to the queue: worker lost, or handed back at shutdown.",
            labels=["reason"],
        )
        for field, value in sorted(stats.items()):
            if field.startswith("requeued:"):
                requeued.add_metric([field.split(":", 1)[1]], value)
        yield requeued
        resent = CounterMetricFamily(
            "jobgate_messages_resent",
            "Job messages the sweep sent again: for a requeued execution, or because the "
            "job's message was found lost (nowhere in the broker, or held by a dead worker).",
            labels=["reason"],
        )
        for field, value in sorted(stats.items()):
            if field.startswith("resent:"):
                resent.add_metric([field.split(":", 1)[1]], value)
        yield resent
        queue = self.store.settings.queue
        queued = GaugeMetricFamily(
            "jobgate_jobs_queued", "Jobs waiting to start.", labels=["queue"]
        )
        queued.add_metric([queue], snapshot["queued"])
        yield queued
        messages = GaugeMetricFamily(
            "jobgate_broker_messages", "Messages in the Celery queue.", labels=["queue"]
        )
        messages.add_metric([queue], snapshot["messages"])
        yield messages
        workers = GaugeMetricFamily(
            "jobgate_workers_alive",
            f"Workers that wrote a heartbeat in the last {limits.WORKER_ALIVE_S} s.",
        )
        workers.add_metric([], snapshot["workers"])
        yield workers
        if self.http is not None:
            self.http.flush()  # this process's own requests, up to this one
        try:
            figures = read_figures(self.store.redis, queue)
        except redis.RedisError:
            return
        yield from operator_metrics(figures, queue)


def metrics_registry(store: JobStore, http: HttpMetrics | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobgateCollector(store, http))
    return registry


def prometheus_text(registry: CollectorRegistry) -> bytes:
    """What /metrics answers: the registry in Prometheus's text exposition format."""
    return generate_latest(registry)
