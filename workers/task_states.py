"""What Celery (its task events, so Flower) is told of a job: the job's own state.

Every message of a job has the job's task id (``<tenant>:<id>``), and the
task's state follows the job's status through ``states.CELERY_STATE_OF``:

- DONE → SUCCESS, the task's result a short summary (never the job's result);
- FAILED → FAILURE, raised as an exception named after the job's error code
  (``JOB_ERROR('…')``), one class per ``ErrorCode`` generated from the enum.
  The task lists them in ``throws``: Celery logs them at INFO without a
  traceback (a failed job is no Jobgate error), and with
  ``task_acks_on_failure_or_timeout`` the message is acked as after a success;
- RUNNING → the custom state PROGRESS, sent as the task event
  ``task-progress`` at most once a second while the job reports progress,
  the first after a second of running.
  Celery's event state (Flower's) takes an unknown event's name as the task's
  state and its fields as the task's; Flower's task page and
  ``/api/task/info`` show only Celery's own fields, so the percent and the
  message travel as ``result`` (``"42% Running: step 42"``), and also as
  ``progress`` and ``message`` for event consumers;
- an execution that ends with the job not terminal (handed back at shutdown,
  or a second delivery of a job another execution holds) or that never took
  the job raises ``Ignore``: no event, the message acked as before, and the
  task keeps the state its job's execution reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from celery.exceptions import Ignore

from workers.job_metrics import JobEnd
from workers.states import CELERY_STATE_OF, ErrorCode, Status

log = logging.getLogger(__name__)

PROGRESS_EVENT = "task-" + CELERY_STATE_OF[Status.RUNNING].lower()
# At most one progress event per job per this many seconds.
PROGRESS_EVENT_INTERVAL = 1.0


class JobFailed(Exception):
    """The job ended FAILED; the subclass is named after its error code."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR


def _failure_class(code: ErrorCode) -> type[JobFailed]:
    # Module-level names, so that the pool process can pickle an instance to
    # the worker's main process (which sends the task-failed event).
    attributes = {
        "code": code,
        "__module__": __name__,
        "__qualname__": code.value,
        "__doc__": f"The job ended FAILED/{code.value}.",
    }
    return type(code.value, (JobFailed,), attributes)


FAILURES: Mapping[ErrorCode, type[JobFailed]] = MappingProxyType(
    {code: _failure_class(code) for code in ErrorCode}
)
globals().update({cls.__name__: cls for cls in FAILURES.values()})


def task_result(end: JobEnd | None) -> str:
    """The task's return value for how the job stands after its execution;
    raises the job's failure, or ``Ignore`` when the job did not end."""
    if end is None or end.status is None or not end.status.terminal:
        raise Ignore()
    state = CELERY_STATE_OF[end.status]
    if state == "FAILURE":
        code = end.code or ErrorCode.INTERNAL_ERROR
        raise FAILURES[code](end.message or code.value)
    took = "" if end.seconds is None else f" in {end.seconds:.3f} s"
    return f"{end.status.value}{took}"


Send = Callable[..., Any]
FAILED_EVENT = "task-failed"


def send_failure(send: Send, end: JobEnd) -> None:
    """A ``task-failed`` event for a job that no worker saw end (the sweep's)."""
    code = end.code or ErrorCode.INTERNAL_ERROR
    try:
        send(FAILED_EVENT, exception=repr(FAILURES[code](end.message or code.value)))
    except Exception as exc:
        log.warning("cannot send a task-failed event: %s", exc)


class ProgressEvents:
    """``JobContext``'s progress hook: a ``task-progress`` event when the
    percent or the message changed, at most one per PROGRESS_EVENT_INTERVAL.
    Called after each progress write (the job's, or its watchdog's), so a
    change held back is sent with a later write."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._message = ""
        self._sent: tuple[int, str] | None = None
        # The first event after a second of running: a shorter job's start and
        # end events say all, and a short job pays for no progress event.
        self._sent_at = time.monotonic()

    def __call__(self, percent: int, message: str) -> None:
        if message:
            self._message = message
        shown = (max(0, percent), self._message)
        now = time.monotonic()
        if shown == self._sent or now - self._sent_at < PROGRESS_EVENT_INTERVAL:
            return
        self._sent, self._sent_at = shown, now
        summary = f"{shown[0]}% {shown[1]}".rstrip()
        try:
            self._send(PROGRESS_EVENT, result=summary, progress=shown[0], message=shown[1])
        except Exception as exc:  # the job goes on without Flower seeing it
            log.warning("cannot send a progress event: %s", exc)


def event_sender(app: Any, task_id: str, hostname: str | None) -> Send:
    """Sends task events for ``task_id`` from any thread (Celery's
    ``Task.send_event`` reads the request from the calling thread's stack:
    the watchdog's thread has none)."""

    def send(event_type: str, **fields: Any) -> None:
        with app.events.default_dispatcher(hostname=hostname) as dispatcher:
            dispatcher.send(
                event_type,
                uuid=task_id,
                retry=True,
                retry_policy=app.conf.task_publish_retry_policy,
                **fields,
            )

    return send
