"""The four statuses, the error codes, and the Celery-state mapping.

This module is the one place that knows how Celery's task states map to
Jobgate's statuses (docs/api.md §1); everything else asks it. The Lua scripts
get the statuses, TERMINAL, the codes and RETRYABLE from here, through the
prelude that workers/store/scripts.py renders.
"""

from __future__ import annotations

import enum
from types import MappingProxyType


class Status(enum.StrEnum):
    INITIALIZED = "INITIALIZED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.DONE, Status.FAILED})


class ErrorCode(enum.StrEnum):
    JOB_ERROR = "JOB_ERROR"
    CANCELLED_BY_USER = "CANCELLED_BY_USER"
    TIMED_OUT = "TIMED_OUT"
    TIME_LIMIT_EXCEEDED = "TIME_LIMIT_EXCEEDED"
    WORKER_LOST = "WORKER_LOST"
    RESULT_TOO_LARGE = "RESULT_TOO_LARGE"
    INTERNAL_ERROR = "INTERNAL_ERROR"

    @property
    def retryable(self) -> bool:
        return self in RETRYABLE


RETRYABLE = frozenset({ErrorCode.TIMED_OUT, ErrorCode.WORKER_LOST, ErrorCode.INTERNAL_ERROR})

# Celery state → Jobgate status (docs/api.md §1). PENDING maps to INITIALIZED
# only for a job whose record exists: Celery says PENDING for any id at all,
# so the record, never Celery, decides whether a job exists.
CELERY_STATES: MappingProxyType[str, Status] = MappingProxyType(
    {
        "PENDING": Status.INITIALIZED,
        "RECEIVED": Status.INITIALIZED,
        "STARTED": Status.RUNNING,
        "PROGRESS": Status.RUNNING,
        "RETRY": Status.RUNNING,
        "SUCCESS": Status.DONE,
        "FAILURE": Status.FAILED,
        "REVOKED": Status.FAILED,
        "REJECTED": Status.FAILED,
    }
)

# The Celery state the worker reports (task events, Flower) for each status.
CELERY_STATE_OF: MappingProxyType[Status, str] = MappingProxyType(
    {
        Status.INITIALIZED: "RECEIVED",
        Status.RUNNING: "PROGRESS",
        Status.DONE: "SUCCESS",
        Status.FAILED: "FAILURE",
    }
)


def status_of_celery_state(state: str) -> Status:
    """Jobgate status for a Celery state; unknown custom states count as RUNNING."""
    return CELERY_STATES.get(state, Status.RUNNING)


class WebhookEvent(enum.StrEnum):
    """What a callback may ask to be told of (submit's ``callback.events``)."""

    DONE = "done"
    FAILED = "failed"
    PROGRESS = "progress"


# A callback's events when the submit names none.
DEFAULT_WEBHOOK_EVENTS = (WebhookEvent.DONE, WebhookEvent.FAILED)


class CallbackState(enum.StrEnum):
    """The status document's ``callback.state``: its latest event's delivery."""

    PENDING = "pending"  # queued, being tried, or waiting for a retry
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every retry failed: given up
