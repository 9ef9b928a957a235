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

# Sends message number ``seq`` of the job ``keys``, of this type name, to the broker.
Resend = Callable[[JobKeys, str, int], None]


def sweep(store: JobStore, resend: Resend) -> dict[str, int]:
    """Settle the jobs whose clocks are due, then resend the requeued ones.

    Safe to run twice at once: each job's settling is one atomic script, a
    requeued job is claimed by one sweep only, and a message sent twice for
    one job runs it once anyway (the second delivery finds it RUNNING under a
    live lease, or finished, and does nothing).
    """
    looked = store.sweep_due()
    lost = store.find_lost_messages()
    if lost:
        log.warning("sweep: %d queued job(s) whose message was lost sent again or failed", lost)
    resent = 0
    for keys, type_name, seq in store.claim_requeued():
        if type_name:
            try:
                resend(keys, type_name, seq)
            except Exception:
                store.unclaim(keys)  # the next sweep tries again
                raise
            resent += 1
        store.mark_resent(keys, seq)
    if resent:
        log.info("sweep: resent %d requeued job(s)", resent)
    return {"looked": looked, "resent": resent}
