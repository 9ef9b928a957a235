"""``jobgate``: start the API, a worker, Flower, or everything at once (``run``).

Each service command validates the configuration first (a bad ``JOBGATE_*``
value stops it with a message naming the variable) and then *replaces itself*
with the real server process (gunicorn, celery), so a supervisor's signals
reach that process directly: SIGTERM to a worker is Celery's warm shutdown.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import NoReturn

from jobgate.redis_server import RedisServer, RedisServerError, answers
from jobgate.server import LIMIT_REQUEST_LINE
from jobgate.supervisor import Supervisor, read_procfile
from workers import logs, registry
from workers.config import Settings, parse_list
from workers.errors import ConfigError
from workers.queues import control_queue, job_queue
from workers.webhooks import webhook_queue

ROOT = Path(__file__).resolve().parent.parent
WORKER_CLASS = "jobgate.server.JobgateWorker"
DEMO_BODY = '{"type": "demo.count", "params": {"n": 100, "delay": 0.05}, "wait": 0}'


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        sys.exit(f"jobgate: invalid configuration: {exc.detail}")


def _exec(argv: list[str]) -> NoReturn:
    """Become ``argv[0]`` from this interpreter's bin directory (or PATH)."""
    binary = Path(sys.executable).parent / argv[0]
    program = str(binary) if binary.exists() else (shutil.which(argv[0]) or argv[0])
    sys.stdout.flush()
    os.execv(program, [program, *argv[1:]])


def _quiet_if_json(settings: Settings) -> list[str]:
    """Celery's start-up banner is not a log line: in JSON mode it is left out,
    so that every line of the output parses."""
    return ["--quiet"] if settings.log_format == "json" else []


def cmd_web(_: argparse.Namespace) -> NoReturn:
    settings = _settings()
    from app.auth import KeyRing, check_bind_allowed  # noqa: PLC0415 - only this command needs Flask

    logs.configure(settings)  # what the checks warn about, in JOBGATE_LOG_FORMAT too

    try:
        check_bind_allowed(settings, KeyRing.from_settings(settings))
    except ConfigError as exc:
        sys.exit(f"jobgate: refusing to start: {exc.detail}")
    _exec(
        [
            "gunicorn",
            # gthread (a long poll or a submit's wait parks one thread, not a
            # process) where request heads are read in the main loop, with
            # bounds, so slow clients hold no thread: jobgate/server.py.
            "--worker-class", WORKER_CLASS,
            # Fits the longest documented request line (100 ids of 64 chars).
            "--limit-request-line", str(LIMIT_REQUEST_LINE),
            # Forwarded headers are trusted by the app alone, and only as far
            # as JOBGATE_TRUSTED_PROXIES says (ProxyFix); gunicorn's default
            # would believe X-Forwarded-Proto from any local client.
            "--forwarded-allow-ips", "",
            "--workers", str(settings.web_workers),
            "--threads", str(settings.web_threads),
            "--bind", f"{settings.bind_host}:{settings.port}",
            "--graceful-timeout", "30",
            "--timeout", "90",
            # Its error log in JOBGATE_LOG_FORMAT; the access log is the app's.
            "--logger-class", "jobgate.server.JobgateLogger",
            "app:create_app()",
        ]
    )  # fmt: skip


def worker_queues(settings: Settings, chosen: str, *, sweep_only: bool = False) -> list[str]:
    """The broker queues a worker consumes: those ``chosen`` (names as the job
    types declare them, ``default`` for JOBGATE_QUEUE; '' = every declared
    queue), and the sweep's."""
    if sweep_only:
        return [control_queue(settings)]
    registry.load_job_modules(settings.job_modules)
    names = parse_list(chosen) if chosen else tuple(registry.queues())
    return [*dict.fromkeys(job_queue(settings, name) for name in names), control_queue(settings)]


def cmd_worker(args: argparse.Namespace) -> NoReturn:
    settings = _settings()
    # Jobs, and the sweep that jobgate beat schedules; --sweep-only: just the
    # sweep, in one process, so it never waits for a free job process.
    queues = worker_queues(settings, args.queues, sweep_only=args.sweep_only)
    concurrency = 1 if args.sweep_only else settings.worker_concurrency
    pool: list[str] = []
    if args.webhooks:
        # Webhook deliveries, on their own queue: threads, since a delivery
        # mostly waits on the network (JOBGATE_WEBHOOK_CONCURRENCY at once).
        queues, concurrency = [webhook_queue(settings)], settings.webhook_concurrency
        pool = ["--pool", "threads"]
    _exec(
        [
            "celery", *_quiet_if_json(settings), "--app", "workers.worker", "worker",
            *pool,
            "--concurrency", str(concurrency),
            "--queues", ",".join(queues),
            "--hostname", f"{args.name}@%h",
            "--loglevel", settings.log_level,
            # Gossip (every worker consuming every other worker's events) and
            # mingle (syncing revoked ids at each (re)connect) serve nothing
            # here: jobs are cancelled through their record, not revoked.
            # Heartbeats, which Flower needs, stay on.
            "--without-gossip", "--without-mingle",
        ]
    )  # fmt: skip


def cmd_beat(_: argparse.Namespace) -> NoReturn:
    settings = _settings()
    _exec(
        [
            "celery", *_quiet_if_json(settings), "--app", "workers.worker", "beat",
            # The schedule is one fixed interval: nothing to keep in a file.
            "--scheduler", "celery.beat:Scheduler",
            "--loglevel", settings.log_level,
        ]
    )  # fmt: skip


def cmd_flower(_: argparse.Namespace) -> NoReturn:
    settings = _settings()
    if not settings.flower_password:
        sys.exit("jobgate: Flower never runs without basic auth: set JOBGATE_FLOWER_PASSWORD")
    # Through the environment, not argv: the password must not show in `ps`.
    os.environ["FLOWER_BASIC_AUTH"] = f"{settings.flower_user}:{settings.flower_password}"
    _exec(
        [
            # Flower's options are tornado's: only the --name=value form works.
            "celery", "--app", "workers.worker", "flower",
            f"--address={settings.bind_host}",
            f"--port={settings.flower_port}",
        ]
    )  # fmt: skip


def _choose_redis(embedded_only: bool = False) -> tuple[str, RedisServer | None]:
    """REDIS_URL if a Redis answers there, else an embedded one on a free port.

    The machine's own Redis on 6379 is never picked by guessing: it may be
    somebody else's, and `make run` must not write job state into it unasked.
    """
    url = os.environ.get("JOBGATE_REDIS_URL") or os.environ.get("REDIS_URL")
    if url and not embedded_only:
        if answers(url):
            return url, None
        print(
            f"jobgate: no Redis answers at {_redacted(url)} (REDIS_URL/JOBGATE_REDIS_URL);"
            " starting an embedded one",
            file=sys.stderr,
        )
    try:
        server = RedisServer().start()
    except RedisServerError as exc:
        sys.exit(f"jobgate: cannot start an embedded Redis: {exc}")
    return server.url, server


def _redacted(url: str) -> str:
    """The URL with its password replaced, for the screen and the logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _banner(settings: Settings, redis_url: str, embedded: bool, password: str) -> str:
    api = f"http://127.0.0.1:{settings.port}"
    flower = f"http://127.0.0.1:{settings.flower_port}"
    which = "embedded redis-server (stopped on exit)" if embedded else "existing Redis"
    return f"""
  Jobgate is running.
    Console  {api}/console   (submit, watch and download jobs in a browser)
    API      {api}   (OpenAPI: {api}/openapi.json)
    Flower   {flower}   user {settings.flower_user!r} password {password!r}
    Redis    {_redacted(redis_url)}   ({which})

  Submit a demo job, then poll the Location it answers with:
    curl -si -X POST {api}/v1/jobs -H 'Content-Type: application/json' -d '{DEMO_BODY}'

  Ctrl-C stops everything.
"""


def _announce_when_up(port: int, text: str, stop: threading.Event) -> None:
    url = f"http://127.0.0.1:{port}/healthz"
    while not stop.wait(0.3):
        try:
            with urllib.request.urlopen(url, timeout=5):
                print(text, flush=True)
                return
        except OSError:
            continue


def cmd_run(args: argparse.Namespace) -> int:
    """Everything for a developer: Redis, API, worker, Flower, in the foreground,
    each restarted when it dies (jobgate/supervisor.py)."""
    settings = _settings()
    redis_url, embedded = _choose_redis(embedded_only=args.embedded_redis)
    password = settings.flower_password or secrets.token_urlsafe(12)
    env = dict(os.environ)
    env.update(
        JOBGATE_REDIS_URL=redis_url,
        JOBGATE_FLOWER_PASSWORD=password,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    env.pop("REDIS_URL", None)
    # For a developer, Flower shows every task (production default: off).
    env.setdefault("JOBGATE_TASK_EVENTS", "1")
    try:
        entries = read_procfile(
            ROOT / args.procfile, args.processes.split(",") if args.processes else None
        )
    except ValueError as exc:
        sys.exit(f"jobgate: {exc}")
    supervisor = Supervisor(entries, env, ROOT, sys.stdout)
    stop = threading.Event()
    text = _banner(settings, redis_url, embedded is not None, password)
    threading.Thread(
        target=_announce_when_up, args=(settings.port, text, stop), daemon=True
    ).start()

    def request_stop(_signum: int, _frame: object) -> None:
        supervisor.request_stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        supervisor.run()
    finally:
        stop.set()
        supervisor.stop()
        if embedded is not None:
            embedded.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobgate", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("web", help="the API under gunicorn").set_defaults(func=cmd_web)
    worker = sub.add_parser("worker", help="a Celery worker")
    worker.add_argument(
        "--sweep-only",
        action="store_true",
        help="consume only the sweep's queue (for when every job process may be busy for long)",
    )
    worker.add_argument(
        "--queues",
        default="",
        help="comma-separated queues to consume, as job types name them ('default': "
        "JOBGATE_QUEUE itself); when not given, every queue a registered type declares",
    )
    worker.add_argument(
        "--webhooks",
        action="store_true",
        help="consume only the webhook deliveries' queue (threads: JOBGATE_WEBHOOK_CONCURRENCY)",
    )
    worker.add_argument(
        "--name",
        default="jobgate",
        help="the node name before @host (default jobgate): one per worker on a host",
    )
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("beat", help="the periodic sweep (Celery beat)").set_defaults(func=cmd_beat)
    sub.add_parser("flower", help="Flower, behind basic auth").set_defaults(func=cmd_flower)
    run = sub.add_parser("run", help="Redis (if needed), API, worker and Flower, for development")
    run.add_argument("--procfile", default="Procfile")
    run.add_argument("--processes", default="", help="comma-separated Procfile entries to start")
    run.add_argument(
        "--embedded-redis",
        action="store_true",
        help="always start a private, throwaway redis-server (ignore REDIS_URL and :6379)",
    )
    run.set_defaults(func=cmd_run)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
