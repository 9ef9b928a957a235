"""What the API needs per app: settings, the store, the Celery producer, keys."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from celery import Celery
from flask import current_app
from kombu.exceptions import OperationalError
from marshmallow import Schema
from prometheus_client import CollectorRegistry

from app.auth import KeyRing
from workers.celery_app import send_job
from workers.config import Settings
from workers.errors import BackendUnavailable
from workers.keys import JobKeys
from workers.registry import JobType
from workers.store import JobStore

log = logging.getLogger(__name__)


class WaitSlots:
    """How many requests of this process may block waiting at once.

    gunicorn's gthread workers accept connections greedily, so one process
    can hold more long polls than it has threads. Waits never take the last
    threads: a request that finds no free slot answers at once (202 with
    Retry-After) instead of blocking, and short requests always find a thread.
    """

    def __init__(self, threads: int) -> None:
        reserve = max(2, threads // 8)
        self.size = max(1, threads - reserve)
        self._slots = threading.BoundedSemaphore(self.size)

    @contextmanager
    def claim(self) -> Iterator[bool]:
        """Yields whether this request may wait; releases the slot after."""
        acquired = self._slots.acquire(blocking=False)
        try:
            yield acquired
        finally:
            if acquired:
                self._slots.release()


@dataclass
class Jobgate:
    settings: Settings
    store: JobStore
    celery: Celery
    keyring: KeyRing
    submit_schemas: dict[str, type[Schema]]
    # One instance of each, made at start (as webargs does for its schemas):
    # building a schema per request cost more than validating with it.
    submit_loaders: dict[str, Schema]
    wait_slots: WaitSlots
    metrics: CollectorRegistry

    def enqueue(self, keys: JobKeys, job_type: JobType) -> None:
        """Queue the job's task by name; undo the job if the broker refuses.

        A refused submit leaves nothing behind: no key, no queued task.
        """
        try:
            send_job(self.celery, self.settings, keys, job_type.name)
        except (OperationalError, OSError) as exc:
            log.warning("cannot enqueue job %s: %s", keys.job_id, exc)
            try:
                self.store.discard(keys)
            except BackendUnavailable:
                log.error("job %s could not be undone; its keys expire by TTL", keys.job_id)
            raise BackendUnavailable(f"The job queue is unavailable: {exc}") from exc


def jobgate() -> Jobgate:
    service: Jobgate = current_app.extensions["jobgate"]
    return service
