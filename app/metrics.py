"""GET /metrics: Prometheus text, from Redis at scrape time.

The job counters are kept in Redis by the same Lua scripts that make the
transitions (``jobgate:stats``), so every API process, on any machine, reports
the same numbers and nothing needs prometheus_client's multiprocess files.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from workers import limits
from workers.errors import BackendUnavailable
from workers.store import JobStore


class JobgateCollector(Collector):
    def __init__(self, store: JobStore) -> None:
        self.store = store

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


def metrics_registry(store: JobStore) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobgateCollector(store))
    return registry


def prometheus_text(registry: CollectorRegistry) -> bytes:
    """What /metrics answers: the registry in Prometheus's text exposition format."""
    return generate_latest(registry)
