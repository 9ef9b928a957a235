"""What every scenario needs: processes it can stop, CPU accounting, statistics.

Every process the bench starts gets its own session (process group), so
stopping it stops its children too (gunicorn's workers, Celery's pool).
Nothing here touches a Redis the bench did not start.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from unittest import mock

import redis

from jobgate import cli
from jobgate.redis_server import RedisServer, free_port
from workers.config import Settings

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """The bench itself cannot go on (a process died, a tool is missing)."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


# -- statistics -------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """Median, min and max of the repetitions of one figure."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def text(self, fmt: str = "{:,.0f}") -> str:
        return f"{fmt.format(self.median)} ({fmt.format(self.low)}..{fmt.format(self.high)})"


def spread(values: list[float]) -> Spread:
    if not values:
        raise BenchError("no repetitions to summarise")
    return Spread(tuple(values))


# -- CPU accounting ---------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its ')'.
    return raw[raw.rindex(")") + 2 :].split()


def group_cpu_seconds(pgid: int) -> float:
    """user + system CPU of every live process in process group ``pgid``."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        # After the name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12).
        if fields is not None and int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def pid_cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# -- processes --------------------------------------------------------------


def child_env(settings: Settings | None = None, **extra: str) -> dict[str, str]:
    """The bench's environment less any JOBGATE_*/REDIS_URL, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBGATE_", "BENCH_"))}
    env.pop("REDIS_URL", None)
    if settings is not None:
        env.update(settings.to_env())
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


class Proc:
    """A child in its own process group, output in a log file under bench/out/."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise BenchError(f"{self.name} exited ({self.popen.returncode}):\n{tail}")

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.pgid)

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """``sig`` to the whole group, then SIGKILL to whatever is left."""
        try:
            if self.alive():
                os.killpg(self.pgid, sig)
                with suppress(subprocess.TimeoutExpired):
                    self.popen.wait(timeout)
            os.killpg(self.pgid, signal.SIGKILL)  # stragglers: pool children, workers
        except ProcessLookupError:
            pass
        if self.popen.poll() is None:
            self.popen.wait()
        self._log.close()


class Stack:
    """Everything a scenario started, stopped in reverse order whatever happens."""

    def __init__(self) -> None:
        self._stops: list[Callable[[], None]] = []

    def push(self, stop: Callable[[], None]) -> None:
        self._stops.append(stop)

    def proc(self, proc: Proc, timeout: float = 10.0) -> Proc:
        self.push(lambda: proc.stop(timeout))
        return proc

    def close(self) -> None:
        errors: list[BaseException] = []
        while self._stops:
            try:
                self._stops.pop()()
            except Exception as exc:  # keep stopping the rest
                errors.append(exc)
        if errors:
            raise BenchError(f"could not stop everything: {errors}")


@contextmanager
def stack() -> Iterator[Stack]:
    s = Stack()
    try:
        yield s
    finally:
        s.close()


# -- Redis ------------------------------------------------------------------


@dataclass
class BenchRedis:
    """The run's own redis-server (never the shared one on 6379)."""

    server: RedisServer
    client: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.client = redis.Redis.from_url(self.server.url, decode_responses=True)

    @property
    def url(self) -> str:
        return self.server.url

    def flush(self) -> None:
        self.client.flushall()

    def info(self, section: str) -> dict[str, Any]:
        reply: dict[str, Any] = self.client.info(section)
        return reply

    def evalsha_calls(self) -> int:
        stats = self.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0)) + int(
            stats.get("cmdstat_eval", {}).get("calls", 0)
        )

    def used_memory(self) -> int:
        return int(self.info("memory")["used_memory"])

    def cpu_seconds(self) -> float:
        assert self.server.process is not None
        return pid_cpu_seconds(self.server.process.pid)


# -- Jobgate and baseline servers ---------------------------------------------


def base_settings(redis_url: str, queue: str, **overrides: Any) -> Settings:
    """Jobgate's defaults (web workers/threads, Celery settings) with the
    bench's clocks: short poll timeouts allowed, no active-job cap in the way."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "queue": queue,
        "log_level": "WARNING",
        "poll_timeout_min": 1,
        "tenant_max_active": 10_000_000,
        "worker_concurrency": 2,
        # The one production setting the bench passes through: with
        # JOBGATE_TASK_EVENTS=1 it measures workers that send Celery task events.
        "task_events": os.environ.get("JOBGATE_TASK_EVENTS", "0") == "1",
    }
    values.update(overrides)
    return Settings(**values)


class _Captured(Exception):
    def __init__(self, argv: list[str]) -> None:
        super().__init__("captured")
        self.argv = argv


def jobgate_web_argv(settings: Settings) -> list[str]:
    """The gunicorn command line ``jobgate web`` runs for ``settings``.

    Captured from ``jobgate.cli.cmd_web`` itself (its exec is intercepted), so a
    baseline served with it gets exactly Jobgate's worker class, workers,
    threads, timeouts and access log.
    """

    def fake_exec(argv: list[str]) -> NoReturn:
        raise _Captured(list(argv))

    saved = dict(os.environ)
    quiet = logging.getLogger("app.auth")
    level = quiet.level
    try:
        os.environ.update(settings.to_env())
        quiet.setLevel(logging.ERROR)
        with mock.patch.object(cli, "_exec", fake_exec):
            cli.cmd_web(argparse.Namespace())
    except _Captured as captured:
        return captured.argv
    finally:
        quiet.setLevel(level)
        os.environ.clear()
        os.environ.update(saved)
    raise BenchError("jobgate web did not exec gunicorn")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@dataclass
class WebServer:
    proc: Proc
    url: str


def start_jobgate_web(
    s: Stack, settings: Settings, log_dir: Path, name: str = "jobgate-web"
) -> WebServer:
    port = free_port()
    settings = settings.with_overrides(port=port)
    proc = s.proc(Proc(name, [str(BIN / "jobgate"), "web"], child_env(settings), log_dir))
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        proc.check_alive()
        return http_ok(f"{url}/healthz")

    wait_until(up, 60, f"{name} to answer /healthz")
    return WebServer(proc, url)


def start_baseline_web(
    s: Stack,
    settings: Settings,
    target: str,
    log_dir: Path,
    name: str,
    worker_class: str | None = None,
    **env: str,
) -> WebServer:
    """A bare Flask app (``module:app``) under Jobgate's own gunicorn command line.

    That includes Jobgate's worker class (jobgate/server.py: gthread that reads
    request heads in its event loop), so the comparison is of the applications;
    ``worker_class="gthread"`` serves the baseline with gunicorn's plain gthread.
    """
    port = free_port()
    settings = settings.with_overrides(port=port)
    argv = jobgate_web_argv(settings)
    if argv[-1] != "app:create_app()" or "--worker-class" not in argv:
        raise BenchError(f"unexpected jobgate web command line: {argv}")
    if worker_class is not None:
        argv[argv.index("--worker-class") + 1] = worker_class
    argv = [str(BIN / "gunicorn"), *argv[1:-1], target]
    proc = s.proc(Proc(name, argv, child_env(settings, **env), log_dir))
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        proc.check_alive()
        return http_ok(f"{url}/healthz")

    wait_until(up, 60, f"{name} to answer /healthz")
    return WebServer(proc, url)


# -- Jobgate as users run it: `jobgate run` (`make run`), the Procfile's processes --


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class JobgateRun:
    """``jobgate run``: the supervisor and every Procfile process under it
    (web, worker, beat, flower, sweeper), each in its own process group."""

    proc: Proc  # the supervisor; its output is every process's, line by line
    url: str
    web_pgid: int  # the gunicorn master's group: master and workers

    def api_cpu_seconds(self) -> float:
        """The API's gunicorn processes (master and workers)."""
        return group_cpu_seconds(self.web_pgid)

    def relay_cpu_seconds(self) -> float:
        """The supervisor, which forwards every process's lines (the access
        log among them) to the terminal: part of the API's cost under `make run`."""
        return pid_cpu_seconds(self.proc.popen.pid)

    def check_alive(self) -> None:
        self.proc.check_alive()


def run_settings(settings: Settings) -> Settings:
    """What `make run` uses: the defaults (INFO, so the access log is on),
    with the bench's Redis, queue, clocks and task-events choice."""
    return settings.with_overrides(log_level="INFO")


def start_jobgate_run(
    s: Stack, settings: Settings, log_dir: Path, name: str = "jobgate-run"
) -> JobgateRun:
    """``jobgate run`` (what ``make run`` starts) on the bench's Redis, on free
    ports, with ``settings`` (see ``run_settings``); ready once /readyz answers
    200 (the API up, a worker consuming the queue)."""
    settings = settings.with_overrides(port=free_port(), flower_port=free_port())
    env = child_env(settings, JOBGATE_FLOWER_PASSWORD="bench-" + os.urandom(6).hex())
    proc = s.proc(Proc(name, [str(BIN / "jobgate"), "run"], env, log_dir), timeout=30)
    url = f"http://127.0.0.1:{settings.port}"

    def ready() -> bool:
        proc.check_alive()
        return http_ok(f"{url}/readyz")

    wait_until(ready, 90, f"{name} (jobgate run) to answer /readyz")

    def web_master() -> int | None:
        for child in children(proc.popen.pid):
            if "gunicorn" in cmdline(child):
                return child
        return None

    master = wait_until(web_master, 30, "the gunicorn master of jobgate run")
    return JobgateRun(proc, url, os.getpgid(master))


# The bare Flask baselines are served in each of these gunicorn configurations
# and compared in their fastest (issue 17): (label, worker class, workers,
# threads); None = Jobgate's own worker class and its defaults. A sync worker
# serves one request at a time per process (and closes each connection);
# gthread 2 x 4 is a common hand-rolled choice.
BASELINE_CONFIGS: tuple[tuple[str, str | None, int | None, int | None], ...] = (
    ("sync 2x1", "sync", 2, 1),
    ("gthread 2x4", "gthread", 2, 4),
    ("Jobgate's own", None, None, None),
)


def start_baselines(
    s: Stack, settings: Settings, target: str, log_dir: Path, name: str
) -> dict[str, WebServer]:
    """The bare Flask app ``target`` under every BASELINE_CONFIGS entry, side by side."""
    servers = {}
    for label, worker_class, workers, threads in BASELINE_CONFIGS:
        if worker_class is None:
            config, server_name = settings, f"{name}-jobgate-settings"
        else:
            overrides = {"web_workers": workers, "web_threads": threads}
            config = settings.with_overrides(**overrides)
            server_name = f"{name}-{worker_class}-{workers}x{threads}"
        servers[label] = start_baseline_web(
            s, config, target, log_dir, server_name, worker_class=worker_class
        )
    return servers


def celery_worker_argv(
    app: str, queue: str, concurrency: int, name: str, level: str, task_events: bool = False
) -> list[str]:
    """A prefork worker, started the way the integration tests start Jobgate's."""
    # Task events (for Flower) on both sides or on neither: Jobgate's workers
    # send them when JOBGATE_TASK_EVENTS=1.
    events = ["--task-events"] if task_events else []
    return [
        str(BIN / "celery"), "--app", app, "worker",
        "--pool", "prefork",
        "--concurrency", str(concurrency),
        "--queues", queue,
        "--hostname", f"{name}@%h",
        "--loglevel", level,
        "--without-gossip", "--without-mingle",
        *events,
    ]  # fmt: skip


def start_jobgate_worker(
    s: Stack, settings: Settings, client: redis.Redis, log_dir: Path, name: str = "jobgate-worker"
) -> Proc:
    argv = celery_worker_argv(
        "workers.worker", settings.queue, settings.worker_concurrency, name, settings.log_level
    )
    proc = s.proc(Proc(name, argv, child_env(settings), log_dir), timeout=15)

    def ready() -> bool:
        proc.check_alive()
        members: Any = client.zrange("jobgate:workers", 0, -1)
        return any(str(m).startswith(f"{name}@") for m in members)

    wait_until(ready, 60, f"worker {name} to start")
    return proc


def start_baseline_worker(
    s: Stack,
    redis_url: str,
    queue: str,
    log_dir: Path,
    name: str = "baseline-worker",
    task_events: bool = False,
) -> Proc:
    argv = celery_worker_argv(
        "bench.baselines.celery_app", queue, 2, name, "WARNING", task_events=task_events
    )
    env = child_env(None, BENCH_REDIS_URL=redis_url, BENCH_QUEUE=queue)
    proc = s.proc(Proc(name, argv, env, log_dir), timeout=15)
    app = baseline_app(redis_url, queue)

    def ready() -> bool:
        proc.check_alive()
        replies = app.control.ping(timeout=0.5)
        return any(f"{name}@" in next(iter(r)) for r in replies or [])

    wait_until(ready, 60, f"baseline worker {name} to start", step=0.2)
    return proc


# -- HTTP as a client ---------------------------------------------------------


def http_json(
    method: str, url: str, body: Any = None, timeout: float = 30
) -> tuple[int, dict[str, Any]]:
    """One request; (status, JSON document) whatever the status."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, raw = int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    doc: dict[str, Any] = json.loads(raw) if raw else {}
    return status, doc


# -- rows of the results table ------------------------------------------------


@dataclass
class Row:
    """One line of bench/results.md."""

    scenario: str
    metric: str
    jobgate: Spread
    baseline: Spread | None
    ratio: str  # how Jobgate compares, in the target's terms
    target: str
    passed: bool | None  # None: informational
    notes: str = ""
    fmt: str = "{:,.0f}"

    @property
    def verdict(self) -> str:
        return "—" if self.passed is None else ("PASS" if self.passed else "MISS")


@dataclass
class RunContext:
    reps: int
    seconds: int  # one wrk run
    log_dir: Path
    run_id: str

    def queue(self, scenario: str) -> str:
        return f"bench-{self.run_id}-{scenario}"


@contextmanager
def fresh_redis() -> Iterator[BenchRedis]:
    """A new redis-server on a free loopback port for one scenario, then gone."""
    server = RedisServer().start()
    try:
        yield BenchRedis(server)
    finally:
        server.close()


def ratio_spread(numerators: list[float], denominators: list[float]) -> str:
    """'0.82x (0.78..0.85)': ratio of medians, range of the paired repetitions."""
    ratio = statistics.median(numerators) / statistics.median(denominators)
    pairs = [a / b for a, b in zip(numerators, denominators, strict=True)]
    return f"{ratio:.2f}x ({min(pairs):.2f}..{max(pairs):.2f})"


_baseline_apps: dict[tuple[str, str], Any] = {}


def baseline_app(redis_url: str, queue: str) -> Any:
    """The bare Celery app (bench/baselines/celery_app.py) as a client, once per
    Redis and queue (Celery refuses a task name registered twice)."""
    from bench.baselines.celery_app import make_app  # noqa: PLC0415

    key = (redis_url, queue)
    if key not in _baseline_apps:
        _baseline_apps[key] = make_app(redis_url, queue)
    return _baseline_apps[key]
