"""The periodic work: the sweep that ``jobgate beat`` schedules.

No Celery here: the task that runs the sweep (``workers.celery_app``) hands it
the store and the way to send a job's message again (``resend``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import redis

from workers.job_metrics import JobEnd, JobMetrics
from workers.keys import JobKeys
from workers.limits import SWEEP_BATCH
from workers.states import Status
from workers.store import JobStore

log = logging.getLogger(__name__)
T = TypeVar("T")

# Sends message number ``seq`` of the job ``keys``, of this type name, to the
# broker: on this queue ('' = its type's), with this priority.
Resend = Callable[[JobKeys, str, int, str, int], None]
# Told the started jobs this sweep ended FAILED (a lost worker's lease, a
# lapsed poll): no worker will report their end.
ReportEnded = Callable[[list[tuple[JobKeys, JobEnd]]], None]


def sweep(
    store: JobStore, resend: Resend, report_ended: ReportEnded | None = None
) -> dict[str, int]:
    """Settle the jobs whose clocks are due, then resend the requeued ones.

    Safe to run twice at once: each job's settling is one atomic script, a
    requeued job is claimed by one sweep only, and a message sent twice for
    one job runs it once anyway (the second delivery finds it RUNNING under a
    live lease, or finished, and does nothing).
    """
    metrics = JobMetrics(store.redis)
    nothing: list[JobKeys] = []
    due = _quietly(partial(metrics.due_now, SWEEP_BATCH), nothing)
    looked = store.sweep_due()
    ended = _ended_by_sweep(metrics, due)
    if ended and report_ended is not None:
        report_ended(ended)
    lost = store.find_lost_messages()
    if lost:
        log.warning("sweep: %d queued job(s) whose message was lost sent again or failed", lost)
    resent = 0
    for keys, type_name, seq, queue, priority in store.claim_requeued():
        if type_name:
            try:
                resend(keys, type_name, seq, queue, priority)
            except Exception:
                store.unclaim(keys)  # the next sweep tries again
                raise
            resent += 1
        store.mark_resent(keys, seq)
    if resent:
        log.info("sweep: resent %d requeued job(s)", resent)
    return {"looked": looked, "resent": resent}


def _ended_by_sweep(metrics: JobMetrics, due: list[JobKeys]) -> list[tuple[JobKeys, JobEnd]]:
    """Of the jobs that were due, those a look finds FAILED first (their
    duration counted now): the sweep ended them, or will be the only one to
    tell."""
    ended = []
    for keys in due:
        end = _quietly(partial(metrics.ended, keys), None)
        if end is not None and end.first_seen and end.status == Status.FAILED:
            ended.append((keys, end))
    return ended


def _quietly(call: Callable[[], T], fallback: T) -> T:
    """A metric's read or write; Redis failing here must not stop the sweep."""
    try:
        return call()
    except redis.RedisError as exc:
        log.warning("sweep: job metrics skipped: %s", exc)
        return fallback
