"""Real processes for integration tests: a Celery worker and a gunicorn API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from jobgate.cli import worker_queues
from jobgate.redis_server import free_port
from workers.config import Settings
from workers.store import JobStore

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    """Wait for a condition (not for a fixed time); fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def child_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBGATE_")}
    env.pop("REDIS_URL", None)
    env.update(settings.to_env())
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Process:
    """A child process with its output in a log file, stopped by SIGTERM."""

    def __init__(self, argv: list[str], settings: Settings, log_path: Path) -> None:
        self.log_path = log_path
        self.name = log_path.stem
        self.log = log_path.open("wb")
        self.popen = subprocess.Popen(
            argv, env=child_env(settings), cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()
        return self.popen.returncode


def start_worker(
    settings: Settings,
    store: JobStore,
    log_dir: Path,
    name: str,
    *,
    sweep_only: bool = False,
    queues: str = "",
    argv_prefix: tuple[str, ...] = (),
) -> Process:
    """``celery worker`` on the chosen ``queues`` (``jobgate worker --queues``'s
    notation; '' = every declared one), its argv after ``argv_prefix`` (say,
    ``ip netns exec <ns>``)."""
    chosen = worker_queues(settings, queues, sweep_only=sweep_only)
    argv = [
        *argv_prefix,
        str(BIN / "celery"), "--app", "workers.worker", "worker",
        "--pool", "prefork",
        "--concurrency", str(settings.worker_concurrency),
        "--queues", ",".join(chosen),
        "--hostname", f"{name}@%h",
        "--loglevel", "INFO",
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    return _until_seen(Process(argv, settings, log_dir / f"{name}.log"), store, name, name)


def start_jobgate_worker(
    settings: Settings, store: JobStore, log_dir: Path, name: str, *, sweep_only: bool = False
) -> Process:
    """``jobgate worker --name NAME``: the worker exactly as the Procfile runs it."""
    argv = [str(BIN / "jobgate"), "worker", "--name", name]
    if sweep_only:
        argv.append("--sweep-only")
    worker = Process(argv, settings, log_dir / f"{name}.log")
    return _until_seen(worker, store, name, f"{name}@")


def _until_seen(worker: Process, store: JobStore, name: str, node_prefix: str) -> Process:
    """``worker`` once its heartbeat (a node name starting ``node_prefix``) is
    seen; stopped, and the failure raised, if it dies or never shows up."""
    try:
        wait_until(
            lambda: (
                not worker.alive() or any(w.startswith(node_prefix) for w in store.workers_seen())
            ),
            60,
            f"worker {name} to start",
        )
    except AssertionError:
        worker.stop()
        raise
    if not worker.alive():
        raise RuntimeError(f"worker {name} died:\n{worker.output()}")
    return worker


def start_beat(settings: Settings, log_dir: Path, name: str = "beat") -> Process:
    """``jobgate beat``: the periodic sweep, as deployed."""
    beat = Process([str(BIN / "jobgate"), "beat"], settings, log_dir / f"{name}.log")
    wait_until(
        lambda: not beat.alive() or "Sending due task" in beat.output(), 30, "beat to send a sweep"
    )
    if not beat.alive():
        raise RuntimeError(f"beat died:\n{beat.output()}")
    return beat


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found


class LiveServer(Process):
    """``jobgate web`` (gunicorn) on a free port."""

    def __init__(
        self, settings: Settings, log_dir: Path, web_workers: int = 1, web_threads: int = 8
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = settings.with_overrides(
            port=self.port, web_workers=web_workers, web_threads=web_threads
        )
        log = log_dir / f"gunicorn-{self.port}.log"
        super().__init__([str(BIN / "jobgate"), "web"], settings, log)
        wait_until(self._up, 60, "gunicorn to answer /healthz")

    def _up(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"gunicorn died:\n{self.output()}")
        try:
            # Generous: a loaded machine may take seconds to answer the first time.
            return requests.get(f"{self.url}/healthz", timeout=10).status_code == 200
        except requests.RequestException:  # not up yet, or slow: ask again
            return False
