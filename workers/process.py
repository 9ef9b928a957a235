"""A worker process's lifecycle: Celery's signals, its state, its store, its heartbeat.

Everything that happens to a process rather than to a job: the pool process's
start (``worker_process_init``), the node's name (``celeryd_init``), the
worker's heartbeat for /readyz (``worker_ready``), and shutdown (SIGTERM to a
pool process, ``worker_shutting_down`` in the main process). What the handlers
learn goes into one object, ``state``; nothing else here is mutable.

The handlers are connected when this module is imported, which
``workers.celery_app`` does, so ``celery -A workers.worker`` has them.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from celery import signals

from workers import limits, logs
from workers.config import Settings
from workers.errors import BackendUnavailable
from workers.store import JobStore

log = logging.getLogger(__name__)

WORKER_HEARTBEAT_SECONDS = limits.WORKER_ALIVE_EVERY_S


def _shared_double() -> ctypes.c_double:
    value: ctypes.c_double = multiprocessing.RawValue("d", 0.0)
    return value


@dataclass
class ProcessState:
    """What this process knows about itself. One instance, ``state``.

    Written by this module's signal handlers, by ``make_celery`` (``settings``)
    and by ``runtime.execute`` (``running``); read by the runtime and the
    watchdog.
    """

    # Set in Celery's pool processes (worker_process_init): only there may the
    # watchdog kill its own process, since the pool replaces it.
    in_pool_process: bool = False
    # The Celery node name (celeryd_init); "" outside a worker.
    node: str = ""
    # A job runs in this process now.
    running: bool = False
    # The configuration the Celery app was made from (make_celery).
    settings: Settings | None = None
    # The process's store and the pid that made it: a forked child makes its own.
    store: JobStore | None = None
    store_pid: int = 0
    # When the worker shuts down: the monotonic time (one clock for every
    # process of the machine) by which running jobs must have ended, else they
    # are handed back to the queue; 0 while not shutting down. Shared memory
    # made before the pool forks, so the main process's warm shutdown reaches
    # every pool process without a signal.
    shutdown_at: ctypes.c_double = field(default_factory=_shared_double)

    def current_settings(self) -> Settings:
        if self.settings is None:
            raise RuntimeError("no Celery app made in this process (make_celery)")
        return self.settings

    def begin_drain(self, grace: float) -> None:
        """The worker is shutting down: running jobs have ``grace`` seconds."""
        if self.shutdown_at.value == 0.0:
            self.shutdown_at.value = time.monotonic() + grace

    def draining(self) -> bool:
        return float(self.shutdown_at.value) != 0.0

    def draining_past_deadline(self) -> bool:
        return self.draining() and time.monotonic() >= float(self.shutdown_at.value)


state = ProcessState()


def worker_store() -> JobStore:
    """One store (one connection pool) per process, made after the fork."""
    pid = os.getpid()
    store = state.store
    if store is None or state.store_pid != pid:
        store = state.store = JobStore.from_settings(state.current_settings())
        state.store_pid = pid
    return store


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    """Celery's worker and beat log through Jobgate's handler (JOBGATE_LOG_FORMAT):
    connecting here is what stops Celery from configuring logging itself."""
    logs.configure(state.current_settings())


@signals.worker_process_init.connect
def _in_pool_process(**_: Any) -> None:
    state.in_pool_process = True
    signal.signal(signal.SIGTERM, _drain_on_sigterm)


def _drain_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM straight to a pool process (a supervisor signalled the whole
    process group): a running job gets JOBGATE_SHUTDOWN_GRACE seconds to end,
    then its watchdog hands it back to the queue. An idle process, or a second
    SIGTERM, ends the process as Celery's default would."""
    if state.running and not state.draining():
        state.begin_drain(state.current_settings().shutdown_grace)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


@signals.worker_shutting_down.connect
def _start_grace_period(**_: Any) -> None:
    """Warm shutdown (SIGTERM to the main process): Celery stops taking
    messages and waits for running jobs; each gets the grace period, then its
    watchdog hands it back, so the wait is bounded and nothing is left RUNNING."""
    state.begin_drain(state.current_settings().shutdown_grace)


@signals.celeryd_init.connect
def _name_node(sender: Any = None, **_: Any) -> None:
    state.node = str(sender or f"worker-{os.getpid()}")


@signals.worker_ready.connect
def _start_worker_heartbeat(sender: Any = None, **_: Any) -> None:
    """Tell /readyz that a worker is alive, and which queues it consumes,
    every 10 s, from the main process (``sender`` is the worker's consumer)."""
    name = state.node
    store = worker_store()
    store.warn_unless_noeviction()

    def consumed() -> list[str]:
        try:
            return sorted(sender.app.amqp.queues.consume_from)
        except AttributeError:  # no consumer to ask: the heartbeat alone
            return []

    def beat() -> None:
        while True:
            try:
                store.mark_worker_alive(name, queues=consumed())
            except BackendUnavailable as exc:
                log.warning("cannot record worker heartbeat: %s", exc)
            threading.Event().wait(WORKER_HEARTBEAT_SECONDS)

    threading.Thread(target=beat, name="jobgate-worker-heartbeat", daemon=True).start()
