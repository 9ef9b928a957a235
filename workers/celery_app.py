"""The Celery app and its configuration, in one place.

``celery -A workers.worker worker`` runs the app made from the environment;
the API makes its own with the same function, only to ``send_task`` by name.
The rest of the worker side lives by duty: the process's lifecycle (Celery's
signals, the per-process store) in ``workers.process``, the periodic sweep in
``workers.sweep``, a job's run in ``workers.runtime``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from celery import Celery

from workers import broker_patch, process, registry, runtime, task_states
from workers.broker import JOB_PRIORITY, MESSAGE_HEADER, PRIORITY_STEPS, RESEND_PRIORITY
from workers.config import Settings
from workers.job_metrics import JobEnd
from workers.keys import JobKeys
from workers.process import worker_store
from workers.store.connection import url_credentials
from workers.sweep import sweep

TASK_NAME = "jobgate.run"
SWEEP_TASK_NAME = "jobgate.sweep"
# Slack added to a job's own limit before Celery's hard limit kills the process:
# Jobgate's watchdog acts first, Celery's limit is the backstop.
HARD_LIMIT_SLACK = 30


def longest_hard_limit(settings: Settings) -> int:
    limits = [t.runtime_limit(settings.max_runtime) for t in registry.all_types()]
    return max([settings.max_runtime, *limits]) + int(settings.cancel_grace) + HARD_LIMIT_SLACK


def hard_limit(settings: Settings, type_name: str) -> int:
    """Celery's hard time limit for a job of this type: the backstop behind the watchdog."""
    job_type = registry.get(type_name)
    runtime = job_type.runtime_limit(settings.max_runtime) if job_type else settings.max_runtime
    return runtime + int(settings.cancel_grace) + HARD_LIMIT_SLACK


def control_queue(settings: Settings) -> str:
    """The queue of the sweep: apart from jobs, so it never waits behind them in a list."""
    return f"{settings.queue}.control"


def send_job(app: Celery, settings: Settings, keys: JobKeys, type_name: str, seq: int = 1) -> None:
    """Put the job's message number ``seq`` on the broker: the job's identity,
    nothing else, under the job's task id (``<tenant>:<id>``, the same for
    every message of the job), its number in a header (``<tenant>:<id>:<seq>``,
    ``seq`` the record's ``msgs``) by which the sweep finds it. The first message of a
    job waits its turn; a later one (the job was requeued, or its message
    lost) is served before every first message (workers/broker.py)."""
    app.send_task(
        TASK_NAME,
        args=[keys.task_arg()],
        task_id=keys.task_arg(),
        headers={MESSAGE_HEADER: keys.message_id(seq)},
        queue=settings.queue,
        priority=JOB_PRIORITY if seq == 1 else RESEND_PRIORITY,
        time_limit=hard_limit(settings, type_name),
    )


def celery_broker_url(settings: Settings) -> str:
    """The broker URL kombu gets. In sentinel mode a broker that is the state's
    Redis (no JOBGATE_BROKER_URL of its own) is reached through the sentinels:
    kombu's ``sentinel://`` transport, one ``sentinel://host:port`` per
    sentinel, the database and password of JOBGATE_REDIS_URL."""
    if settings.redis_mode != "sentinel" or settings.broker_url != settings.redis_url:
        return settings.broker_url
    parsed = url_credentials(settings.redis_url)
    auth = ""
    if parsed.get("password"):
        user = quote(parsed.get("username") or "", safe="")
        auth = f"{user}:{quote(parsed['password'], safe='')}@"
    db = parsed.get("db", 0)
    return ";".join(f"sentinel://{auth}{entry}/{db}" for entry in settings.redis_sentinels)


def celery_config(settings: Settings) -> dict[str, Any]:
    # A message must never be redelivered while its job may still run, so the
    # broker's visibility timeout outlasts the longest hard time limit.
    visibility = longest_hard_limit(settings) + 600
    transport = {
        "visibility_timeout": visibility,
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "health_check_interval": 10,  # find dead connections before using them
        # Two priority lists per queue: resent messages before first ones
        # (workers/broker.py); kombu's default has four.
        "priority_steps": PRIORITY_STEPS,
    }
    broker_url = celery_broker_url(settings)
    if broker_url.startswith("sentinel://"):
        transport["master_name"] = settings.redis_sentinel_master
        transport["sentinel_kwargs"] = {
            "socket_timeout": settings.redis_timeout,
            "socket_connect_timeout": settings.redis_timeout,
        }
    return {
        "broker_url": broker_url,
        # Celery's hard limit for every task (the API sets each job's own when it
        # sends it); Jobgate's watchdog acts first, this is the backstop.
        "task_time_limit": longest_hard_limit(settings),
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
        # A job that ended FAILED raises (its task shows FAILURE): its message
        # is acked all the same (Celery's default, stated: False would drop it
        # with a reject instead). Job time limits are Jobgate's own.
        "task_acks_on_failure_or_timeout": True,
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
        # Task events for Flower, from the workers. Not the "sent" event: it
        # would cost every submit one more broker write, and Flower shows a
        # job from the moment a worker receives it.
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        # The sweep (jobgate beat): lost leases and unpolled jobs are found from
        # sorted sets of deadlines. A sweep message older than two intervals is
        # dropped: the next one does the same work.
        "beat_schedule": {
            "jobgate-sweep": {
                "task": SWEEP_TASK_NAME,
                "schedule": settings.sweep_interval,
                "options": {
                    "queue": control_queue(settings),
                    "expires": max(1.0, 2 * settings.sweep_interval),
                },
            }
        },
        "task_routes": {SWEEP_TASK_NAME: {"queue": control_queue(settings)}},
    }


def make_celery(settings: Settings) -> Celery:
    registry.load_job_modules(settings.job_modules)
    broker_patch.apply()  # a Redis restart must not kill the worker (kombu bug)
    process.state.settings = settings
    app = Celery("jobgate")
    # Only Celery's own settings go in app.conf: `inspect conf` (and so Flower)
    # shows every key of it, censoring by key name only. Jobgate's Settings
    # (API keys, the Flower password, the Redis URL) stay in process.state.
    app.conf.update(celery_config(settings))

    # A job that ended FAILED raises its code's JobFailed (workers.task_states):
    # expected (``throws``: logged at INFO, no traceback), acked as a success.
    @app.task(
        name=TASK_NAME,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        throws=(task_states.JobFailed,),
    )
    def run_job(task: Any, job_ref: str) -> str:
        keys = JobKeys.from_task_arg(job_ref)
        store = worker_store()
        progress = None
        if settings.task_events:
            send = task_states.event_sender(app, task.request.id, task.request.hostname)
            progress = task_states.ProgressEvents(send)
        runtime.execute(store, settings, keys, on_progress=progress)
        # Also when this delivery did not run it (the job was cancelled, or
        # ran, before): the task shows how the job ended, or nothing new.
        return task_states.task_result(runtime.job_end(store, keys))

    def resend(keys: JobKeys, type_name: str, seq: int) -> None:
        send_job(app, settings, keys, type_name, seq)

    def report_lost_executions(ended: list[tuple[JobKeys, JobEnd]]) -> None:
        # The sweep ended these jobs (a lost worker's lease, a lapsed poll):
        # no worker will report them, so the sweep's process does.
        if settings.task_events:
            for keys, end in ended:
                send = task_states.event_sender(app, keys.task_arg(), process.state.node)
                task_states.send_failure(send, end)

    # Acked at once: a lost sweep is replaced by the next one.
    @app.task(name=SWEEP_TASK_NAME, acks_late=False, ignore_result=True)
    def run_sweep() -> dict[str, int]:
        return sweep(worker_store(), resend, report_lost_executions)

    return app
