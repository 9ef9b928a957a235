"""What the API needs per app: settings, the store, the Celery producer, keys."""

from __future__ import annotations

import logging
import threading
from collections import Counter
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
from workers.queues import job_queue
from workers.registry import JobType
from workers.store import JobStore

log = logging.getLogger(__name__)


class WaitSlots:
    """How many requests of this process may block waiting at once, and per tenant.

    gunicorn's gthread workers accept connections greedily, so one process
    can hold more long polls than it has threads. Waits never take the last
    threads: a request that finds no free slot answers at once (202 with
    Retry-After) instead of blocking, and short requests always find a thread.
    With more than one tenant, one tenant may hold at most ``tenant_share`` of
    the slots (JOBGATE_TENANT_WAIT_SHARE), so another tenant's waits still
    find some: one tenant's flood of long polls cannot answer everyone else's
    at once. Polls, submits and idempotent replays all claim here.
    """

    def __init__(self, threads: int, tenant_share: float = 1.0, tenants: int = 1) -> None:
        reserve = max(2, threads // 8)
        self.size = max(1, threads - reserve)
        self.per_tenant = self.size if tenants <= 1 else max(1, int(self.size * tenant_share))
        self._lock = threading.Lock()
        self._total = 0
        self._held: Counter[str] = Counter()

    def held(self, tenant: str) -> int:
        with self._lock:
            return self._held[tenant]

    def _acquire(self, tenant: str) -> bool:
        with self._lock:
            if self._total >= self.size or self._held[tenant] >= self.per_tenant:
                return False
            self._total += 1
            self._held[tenant] += 1
            return True

    def _release(self, tenant: str) -> None:
        with self._lock:
            self._total -= 1
            self._held[tenant] -= 1
            if not self._held[tenant]:
                del self._held[tenant]

    @contextmanager
    def claim(self, tenant: str) -> Iterator[bool]:
        """Yields whether this request may wait; releases the slot after."""
        acquired = self._acquire(tenant)
        try:
            yield acquired
        finally:
            if acquired:
                self._release(tenant)


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

    def enqueue(self, keys: JobKeys, job_type: JobType, priority: int) -> None:
        """Queue the job's task by name; undo the job if the broker refuses.

        A refused submit leaves nothing behind: no key, no queued task.
        """
        try:
            queue = job_queue(self.settings, job_type.queue)
            send_job(
                self.celery, self.settings, keys, job_type.name, queue=queue, priority=priority
            )
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
