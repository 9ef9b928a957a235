"""Job queues by name: a type's queue (``@job(queue=...)``) on the broker.

JOBGATE_QUEUE names the default queue and prefixes every other one, so two
Jobgates can share one broker: a type declaring ``queue="reports"`` has its
messages on ``<JOBGATE_QUEUE>.reports``. The sweep's queue is
``<JOBGATE_QUEUE>.control`` (a reserved name).
"""

from __future__ import annotations

from workers.config import Settings
from workers.registry import HIGHEST_PRIORITY, LOWEST_PRIORITY

PRIORITIES = tuple(range(LOWEST_PRIORITY, HIGHEST_PRIORITY + 1))
DEFAULT_QUEUE_NAME = "default"


def job_queue(settings: Settings, name: str) -> str:
    """The broker queue of the queue ``name`` ('' or ``default``: JOBGATE_QUEUE itself)."""
    if name in ("", DEFAULT_QUEUE_NAME):
        return settings.queue
    return f"{settings.queue}.{name}"


def control_queue(settings: Settings) -> str:
    """The queue of the sweep: apart from jobs, so it never waits behind them."""
    return f"{settings.queue}.control"
