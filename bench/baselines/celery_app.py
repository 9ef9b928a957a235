"""Bare Celery: a no-op task (ignore_result) and an echo task (with a result backend).

Broker and delivery settings are Jobgate's own (the same broker, transport
options, JSON, ``acks_late``, prefetch 1; ``bench`` checks at start that they
still equal ``workers.celery_app.celery_config``); nothing else is: no task
events, no job records, no watchdog. Only this baseline has a result backend
(the same Redis), for the ``apply_async(...).get()`` latency of scenario (d).

It does not import ``workers`` (whose signal handlers would run in this
worker). The worker: ``celery --app bench.baselines.celery_app worker`` with
``BENCH_REDIS_URL`` and ``BENCH_QUEUE`` set.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

NOOP = "bench.noop"
ECHO = "bench.echo"
# Jobgate's values for a deployment with the default maximum runtime (4 h):
# visibility = 14400 + 10 (grace) + 30 (slack) + 600.
VISIBILITY_TIMEOUT = 15040
REDIS_TIMEOUT = 2.0


def shared_config(redis_url: str) -> dict[str, Any]:
    """The Celery settings a hand-rolled app doing the same work shares with Jobgate."""
    transport = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "socket_timeout": REDIS_TIMEOUT,
        "socket_connect_timeout": REDIS_TIMEOUT,
        "health_check_interval": 10,
    }
    return {
        "broker_url": redis_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_connection_timeout": REDIS_TIMEOUT,
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
    }


def make_app(redis_url: str, queue: str) -> Celery:
    app = Celery("bench-baseline")
    app.conf.update(shared_config(redis_url))
    app.conf.update(
        task_default_queue=queue,
        result_backend=redis_url,
        result_backend_transport_options=shared_config(redis_url)["broker_transport_options"],
        result_serializer="json",
        result_expires=600,
    )

    @app.task(name=NOOP, ignore_result=True, shared=False)  # type: ignore[untyped-decorator]
    def noop(*args: Any) -> None:
        return None

    @app.task(name=ECHO, ignore_result=False, shared=False)  # type: ignore[untyped-decorator]
    def echo(value: Any) -> Any:
        return value

    return app


app = make_app(
    os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0"),
    os.environ.get("BENCH_QUEUE", "bench-baseline"),
)
