"""The Celery app and its configuration, in one place.

``celery -A workers.worker worker`` runs the app made from the environment;
the API makes its own with the same function, only to ``send_task`` by name.
The rest of the worker side lives by duty: the process's lifecycle (Celery's
signals, the per-process store) in ``workers.process``, the periodic sweep in
``workers.sweep``, a job's run in ``workers.runtime``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from celery import Celery, signals

from workers import broker_patch, limits, process, registry, runtime, task_states, webhooks
from workers.broker import (
    MAX_PRIORITY,
    MESSAGE_HEADER,
    PRIORITY_STEPS,
    is_amqp_url,
    message_priority,
)
from workers.config import Settings
from workers.job_metrics import JobEnd
from workers.keys import JobKeys
from workers.process import worker_store
from workers.queues import control_queue, job_queue
from workers.store.connection import url_credentials
from workers.sweep import sweep

TASK_NAME = "jobgate.run"
SWEEP_TASK_NAME = "jobgate.sweep"
# Slack added to a job's own limit before Celery's hard limit kills the process:
# Jobgate's watchdog acts first, Celery's limit is the backstop.
HARD_LIMIT_SLACK = 30
# RabbitMQ's default consumer_timeout (ms): it closes the channel of a consumer
# that holds an unacked delivery longer, and with acks late a job's message is
# held for the job's whole run (README, "Scaling out").
RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_S = 1800

log = logging.getLogger(__name__)


def longest_hard_limit(settings: Settings) -> int:
    limits = [t.runtime_limit(settings.max_runtime) for t in registry.all_types()]
    return max([settings.max_runtime, *limits]) + int(settings.cancel_grace) + HARD_LIMIT_SLACK


def hard_limit(settings: Settings, type_name: str) -> int:
    """Celery's hard time limit for a job of this type: the backstop behind the watchdog."""
    job_type = registry.get(type_name)
    runtime = job_type.runtime_limit(settings.max_runtime) if job_type else settings.max_runtime
    return runtime + int(settings.cancel_grace) + HARD_LIMIT_SLACK


def type_queue(settings: Settings, type_name: str) -> str:
    """The broker queue of a job type's messages."""
    job_type = registry.get(type_name)
    return job_queue(settings, job_type.queue if job_type else "")


def send_job(
    app: Celery,
    settings: Settings,
    keys: JobKeys,
    type_name: str,
    seq: int = 1,
    *,
    queue: str = "",
    priority: int = registry.DEFAULT_PRIORITY,
) -> None:
    """Put the job's message number ``seq`` on the broker: the job's identity,
    nothing else, under the job's task id (``<tenant>:<id>``, the same for
    every message of the job), its number in a header (``<tenant>:<id>:<seq>``,
    ``seq`` the record's ``msgs``) by which the sweep finds it. Every message
    of a job goes to its queue (default: its type's) with the job's priority,
    the first and any resend alike (workers/broker.py)."""
    app.send_task(
        TASK_NAME,
        args=[keys.task_arg()],
        task_id=keys.task_arg(),
        headers={MESSAGE_HEADER: keys.message_id(seq)},
        queue=queue or type_queue(settings, type_name),
        priority=message_priority(priority, settings.broker_url),
        time_limit=hard_limit(settings, type_name),
    )


def warn_about_consumer_timeout(settings: Settings) -> str | None:
    """On RabbitMQ, the warning a worker logs at start when a job may run
    longer than RabbitMQ's default consumer_timeout (None: nothing to say)."""
    longest = longest_hard_limit(settings)
    if not is_amqp_url(settings.broker_url) or longest <= RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_S:
        return None
    return (
        f"a job may hold its RabbitMQ message for up to {longest} s, longer than RabbitMQ's "
        f"default consumer_timeout ({RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_S} s): unless the "
        f"server's is set above {longest * 1000} ms, RabbitMQ closes the channel of a worker "
        "running a long job (no job is lost or run twice: see README, 'Scaling out')"
    )


def send_delivery(app: Celery, settings: Settings, hook_id: str) -> None:
    """Hand webhook delivery ``hook_id`` to a task on the webhooks' queue."""
    app.send_task(
        webhooks.TASK_NAME,
        args=[hook_id],
        queue=webhooks.webhook_queue(settings),
        # Its claim (WEBHOOK_CLAIM_MS) brings it back to the sweep after this.
        expires=limits.WEBHOOK_CLAIM_MS / 1000,
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
    transport: dict[str, Any] = {
        "visibility_timeout": visibility,
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "health_check_interval": 10,  # find dead connections before using them
        # One list per priority (workers/broker.py); kombu's default has four.
        "priority_steps": PRIORITY_STEPS,
    }
    broker_url = celery_broker_url(settings)
    broker_transport = transport
    if is_amqp_url(broker_url):
        # RabbitMQ: an unacked message goes back to its queue as soon as the
        # connection that held it closes; no visibility timeout to tune.
        broker_transport = {"confirm_publish": True}
    elif broker_url.startswith("sentinel://"):
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
        "broker_transport_options": broker_transport,
        "result_backend_transport_options": transport,
        # RabbitMQ: every queue Celery declares is a classic queue with 10
        # priorities (x-max-priority; quorum queues of RabbitMQ 3.10 have none).
        # Ignored by the Redis transport, whose priorities are lists.
        "task_queue_max_priority": MAX_PRIORITY,
        "task_create_missing_queue_type": "classic",
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
        "task_routes": {
            SWEEP_TASK_NAME: {"queue": control_queue(settings)},
            webhooks.TASK_NAME: {"queue": webhooks.webhook_queue(settings)},
        },
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

    @signals.worker_ready.connect(weak=False)
    def _check_consumer_timeout(**_: Any) -> None:
        warning = warn_about_consumer_timeout(settings)
        if warning:
            log.warning("%s", warning)

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
        if store.hook_sink is None:  # a callback's event goes out as the job ends
            store.hook_sink = webhooks.dispatcher(store, send_webhook)
        progress = None
        if settings.task_events:
            send = task_states.event_sender(app, task.request.id, task.request.hostname)
            progress = task_states.ProgressEvents(send)
        outcome = runtime.execute(store, settings, keys, on_progress=progress)
        # Also when this delivery did not end it (the job was cancelled, or
        # ran, before): the task shows how the job ended, or nothing new. An
        # end this execution wrote came back with its reply: no second look.
        end = outcome.end or runtime.job_end(store, keys)
        return task_states.task_result(end)

    def resend(keys: JobKeys, type_name: str, seq: int, queue: str, priority: int) -> None:
        send_job(app, settings, keys, type_name, seq, queue=queue, priority=priority)

    def report_lost_executions(ended: list[tuple[JobKeys, JobEnd]]) -> None:
        # The sweep ended these jobs (a lost worker's lease, a lapsed poll):
        # no worker will report them, so the sweep's process does.
        if settings.task_events:
            for keys, end in ended:
                send = task_states.event_sender(app, keys.task_arg(), process.state.node)
                task_states.send_failure(send, end)

    def send_webhook(hook_id: str) -> None:
        send_delivery(app, settings, hook_id)

    # Acked at once: a lost sweep is replaced by the next one.
    @app.task(name=SWEEP_TASK_NAME, acks_late=False, ignore_result=True)
    def run_sweep() -> dict[str, int]:
        store = worker_store()
        swept = sweep(store, resend, report_lost_executions)
        # Webhook deliveries due: new ones nobody sent at once, retries, and
        # those whose task died with them (their claim expired). Only while a
        # webhook worker is alive: else they wait in Redis, not as messages
        # piling up in the broker (one per delivery per claim).
        swept["webhooks"] = 0
        if store.workers_seen(queue=webhooks.webhook_queue(settings)):
            swept["webhooks"] = webhooks.dispatch(store, send_webhook)
        return swept

    # One attempt at one delivery. Acked at once: the delivery's claim in Redis,
    # not the message, is what brings it back if this task dies.
    @app.task(name=webhooks.TASK_NAME, acks_late=False, ignore_result=True)
    def run_webhook(hook_id: str) -> str:
        return webhooks.deliver(worker_store(), settings, hook_id)

    return app
