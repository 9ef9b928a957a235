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
from workers.webhooks import WEBHOOK_BUCKETS


@dataclass(frozen=True)
class OperatorFigures:
    """What the SRE metrics are made of, read in one MULTI (one consistent
    snapshot): the histogram hashes, the queue index's head, the live jobs."""

    job_duration: dict[Any, Any]
    queue_wait: dict[Any, Any]
    http_requests: dict[Any, Any]
    http_duration: dict[Any, Any]
    oldest_age: dict[str, float]  # by queue
    queued: int
    running: int
    webhook_duration: dict[Any, Any]


def read_figures(client: redis.Redis, indexes: dict[str, list[str]]) -> OperatorFigures:
    """RUNNING is derived, not counted twice: every live job is in the due set
    (its lease or its clocks), every INITIALIZED one also in a queue index.
    ``indexes``: each queue's indexes (one per priority)."""
    # One snapshot where one Redis holds it all; a Cluster has no transaction
    # across slots and no TIME in a pipeline (it names no key).
    cluster = isinstance(client, redis.RedisCluster)
    pipe = client.pipeline(transaction=not cluster)
    pipe.hgetall(keyspace.JOB_DURATION)
    pipe.hgetall(keyspace.JOB_QUEUE_WAIT)
    pipe.hgetall(keyspace.HTTP_REQUESTS)
    pipe.hgetall(keyspace.HTTP_DURATION)
    pipe.hgetall(keyspace.WEBHOOK_DURATION)
    pipe.zcard(keyspace.DUE)
    if not cluster:
        pipe.time()
    for names in indexes.values():
        for index in names:
            pipe.zrange(index, 0, 0, withscores=True)
            pipe.zcard(index)
    replies = pipe.execute()
    if cluster:
        replies.insert(6, client.time())
    duration, wait, requests, http_duration, webhook_duration, live, now, *heads = replies
    secs, micros = now
    now_ms = int(secs) * 1000 + int(micros) // 1000
    oldest: dict[str, float] = {}
    queued = 0
    head_replies = iter(heads)
    for queue, names in indexes.items():
        # An index score is the enqueue time in ms times 1000 plus a sequence.
        scores = []
        for _ in names:
            head, count = next(head_replies), next(head_replies)
            scores += [float(score) for _, score in head]
            queued += int(count)
        oldest[queue] = max(0.0, (now_ms - min(scores) // 1000) / 1000) if scores else 0.0
    return OperatorFigures(
        duration,
        wait,
        requests,
        http_duration,
        oldest,
        queued,
        max(0, live - queued),
        webhook_duration,
    )


def _histogram(
    name: str, doc: str, labels: list[str], raw: dict[Any, Any], bounds: Iterable[float]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for series in histograms(raw, bounds, len(labels)):
        family.add_metric(list(series.labels), series.buckets, series.total)
    return family


def operator_metrics(figures: OperatorFigures) -> Iterator[Metric]:
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
    for queue, age in figures.oldest_age.items():
        oldest.add_metric([queue], age)
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
    yield _histogram(
        "jobgate_webhook_delivery_seconds",
        "Webhook delivery attempts, from connect to the receiver's answer, by outcome.",
        ["outcome"],
        figures.webhook_duration,
        WEBHOOK_BUCKETS,
    )


def _counted(
    stats: dict[str, int], prefix: str, name: str, doc: str, label: str
) -> CounterMetricFamily:
    """A counter by one label from the stats hash's ``<prefix>:<value>`` fields."""
    family = CounterMetricFamily(name, doc, labels=[label])
    for field, value in sorted(stats.items()):
        if field.startswith(prefix + ":"):
            family.add_metric([field.split(":", 1)[1]], value)
    return family


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
        yield _counted(
            stats,
            "requeued",
            "jobgate_jobs_requeued",
            "Executions given back to the queue: worker lost, or handed back at shutdown.",
            "reason",
        )
        yield _counted(
            stats,
            "resent",
            "jobgate_messages_resent",
            "Job messages the sweep sent again: for a requeued execution, or because the "
            "job's message was found lost (nowhere in the broker, or held by a dead worker).",
            "reason",
        )
        yield _counted(
            stats,
            "webhook",
            "jobgate_webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered: 2xx; rejected: another "
            "status; error: no answer in time, no connection, or an address refused), "
            "and deliveries given up after their last retry (given_up).",
            "outcome",
        )
        queued = GaugeMetricFamily(
            "jobgate_jobs_queued", "Jobs waiting to start.", labels=["queue"]
        )
        for queue, count in snapshot["queued"].items():
            queued.add_metric([queue], count)
        yield queued
        messages = GaugeMetricFamily(
            "jobgate_broker_messages",
            "Messages in the Celery queue (a Redis broker's only).",
            labels=["queue"],
        )
        for queue, count in snapshot["messages"].items():
            messages.add_metric([queue], count)
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
            indexes = {
                queue: [keyspace.queue_index(queue), *self.store.queue_indexes(queue)]
                for queue in self.store.queues()
            }
            figures = read_figures(self.store.redis, indexes)
        except redis.RedisError:
            return
        yield from operator_metrics(figures)


def metrics_registry(store: JobStore, http: HttpMetrics | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobgateCollector(store, http))
    return registry


def prometheus_text(registry: CollectorRegistry) -> bytes:
    """What /metrics answers: the registry in Prometheus's text exposition format."""
    return generate_latest(registry)
