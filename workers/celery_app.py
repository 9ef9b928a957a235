"""The Celery app and its configuration, in one place.

``celery -A workers.worker worker`` runs the app made from the environment;
the API makes its own with the same function, only to ``send_task`` by name.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import Celery, signals

from workers import registry, runtime
from workers.config import Settings
from workers.errors import BackendUnavailable
from workers.keys import JobKeys
from workers.store import JobStore

log = logging.getLogger(__name__)

TASK_NAME = "jobgate.run"
WORKER_HEARTBEAT_SECONDS = 10
# Slack added to a job's own limit before Celery's hard limit kills the process:
# Jobgate's watchdog acts first, Celery's limit is the backstop.
HARD_LIMIT_SLACK = 30


def longest_hard_limit(settings: Settings) -> int:
    limits = [t.runtime_limit(settings.max_runtime) for t in registry.all_types()]
    return max([settings.max_runtime, *limits]) + int(settings.cancel_grace) + HARD_LIMIT_SLACK


def celery_config(settings: Settings) -> dict[str, Any]:
    # A message must never be redelivered while its job may still run, so the
    # broker's visibility timeout outlasts the longest hard time limit.
    visibility = longest_hard_limit(settings) + 600
    transport = {
        "visibility_timeout": visibility,
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "health_check_interval": 10,  # find dead connections before using them
    }
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        # Jobgate's own keys are the record; Celery's results would only grow Redis.
        "task_ignore_result": True,
        "result_backend": None,
        # JSON only: nothing from a client is ever unpickled.
        "task_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        # Ack after the job ran, and requeue when the pool process dies, so a
        # killed worker does not lose its job.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # One message per process at a time: no job waits behind a long one.
        "worker_prefetch_multiplier": 1,
        "task_default_queue": settings.queue,
        # Keep retrying the broker forever, at start and after an outage.
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_connection_timeout": settings.redis_timeout,
        # A submit must fail fast (503) when the broker is down, not hang.
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        # Task events for Flower.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
    }


def make_celery(settings: Settings) -> Celery:
    registry.load_job_modules(settings.job_modules)
    _current["settings"] = settings
    app = Celery("jobgate")
    app.conf.update(celery_config(settings))
    app.conf.jobgate_settings = settings

    @app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
    def run_job(task: Any, job_ref: str) -> str:
        return runtime.execute(worker_store(), settings, JobKeys.from_task_arg(job_ref))

    return app


_stores: dict[int, JobStore] = {}
_current: dict[str, Settings] = {}


def worker_store() -> JobStore:
    """One store (one connection pool) per process, made after the fork."""
    pid = os.getpid()
    store = _stores.get(pid)
    if store is None:
        store = _stores[pid] = JobStore.from_settings(_current["settings"])
    return store


@signals.worker_process_init.connect
def _in_pool_process(**_: Any) -> None:
    runtime.state["in_pool_process"] = True


@signals.worker_ready.connect
def _start_worker_heartbeat(sender: Any = None, **_: Any) -> None:
    """Tell /readyz that a worker is alive, every 10 s, from the main process."""
    name = getattr(sender, "hostname", None) or f"worker-{os.getpid()}"
    store = worker_store()
    store.warn_unless_noeviction()

    def beat() -> None:
        while True:
            try:
                store.mark_worker_alive(name)
            except BackendUnavailable as exc:
                log.warning("cannot record worker heartbeat: %s", exc)
            threading.Event().wait(WORKER_HEARTBEAT_SECONDS)

    threading.Thread(target=beat, name="jobgate-worker-heartbeat", daemon=True).start()
