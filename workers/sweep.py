"""The periodic work: the sweep that ``jobgate beat`` schedules.

No Celery here: the task that runs the sweep (``workers.celery_app``) hands it
the store and the way to send a job's message again (``resend``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from workers.keys import JobKeys
from workers.store import JobStore

log = logging.getLogger(__name__)

# Sends the message of the job ``keys``, of this type name, to the broker.
Resend = Callable[[JobKeys, str], None]


def sweep(store: JobStore, resend: Resend) -> dict[str, int]:
    """Settle the jobs whose clocks are due, then resend the requeued ones.

    Safe to run twice at once: each job's settling is one atomic script, and a
    message sent twice for one job runs it once (the second delivery finds it
    RUNNING under a live lease, or finished, and does nothing).
    """
    looked = store.sweep_due()
    lost = store.find_lost_messages()
    if lost:
        log.warning("sweep: %d queued job(s) whose message was lost requeued", lost)
    resent = 0
    for keys, type_name in store.requeued():
        if type_name:
            resend(keys, type_name)
            resent += 1
        store.mark_resent(keys)
    if resent:
        log.info("sweep: resent %d requeued job(s)", resent)
    return {"looked": looked, "resent": resent}
