"""jg: submit Jobgate jobs, watch them with a progress bar, fetch their results.

Exit codes: 0 the job is DONE (or the command did what it was asked), 1 the job
FAILED, 2 usage error or a request refused (4xx), 3 server unreachable or 5xx
after retries, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table

from jobgate_client import _core as core
from jobgate_client._sync import Client, Job
from jobgate_client.errors import JobFailed, JobgateError, Unavailable
from jobgate_client.models import Snapshot

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130
TABLE_ROWS_SHOWN = 1000

out = Console(soft_wrap=True)
err = Console(stderr=True)


class Interrupted(Exception):
    """Ctrl-C while watching, after leaving (or cancelling) the job."""


# -- arguments ----------------------------------------------------------------


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value that parses as JSON is that JSON (``n=5`` is 5), else a string."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected key=value, got {pair!r}")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def exit_code(snapshot: Snapshot) -> int:
    return EXIT_FAILED if snapshot.status == "FAILED" else EXIT_DONE


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


# -- showing progress ---------------------------------------------------------


def progress_line(snapshot: Snapshot) -> str:
    return (
        f"{datetime.now():%H:%M:%S} {snapshot.id} {snapshot.status} "
        f"{snapshot.progress:3d}% {snapshot.message}"
    )


@contextmanager
def progress_display(job: Job, as_json: bool) -> Iterator[Callable[[Snapshot], None]]:
    """Where each change goes: a rich bar on a terminal, else a line per change
    (a JSON status document per line with ``--json``)."""
    if as_json:
        yield lambda snapshot: print(json.dumps(snapshot.raw), flush=True)
        return
    if not err.is_terminal:
        yield lambda snapshot: print(progress_line(snapshot), file=sys.stderr, flush=True)
        return
    bar = Progress(
        TextColumn("{task.fields[status]}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[message]}"),
        console=err,
    )
    task = bar.add_task(job.id, total=100, status="", message="")

    def show(snapshot: Snapshot) -> None:
        style = {"DONE": "green", "FAILED": "red"}.get(snapshot.status, "cyan")
        status = f"[bold {style}]{snapshot.status:<11}[/]"
        bar.update(task, completed=snapshot.progress, status=status, message=snapshot.message)

    with bar:
        show(job.snapshot)
        yield show


def follow(job: Job, args: argparse.Namespace, *, json_lines: bool = False) -> Snapshot:
    """Watch ``job`` to its end; on Ctrl-C leave it running (or cancel it).

    ``json_lines``: each change as a JSON document on stdout (``jg watch --json``).
    """
    try:
        with progress_display(job, json_lines) as show:
            job.wait(on_progress=show)
    except KeyboardInterrupt:
        if args.cancel_on_interrupt:
            job.cancel()
            err.print(f"Interrupted: job {job.id} cancelled.")
        else:
            err.print(f"Interrupted: job {job.id} goes on. Watch it again: jg watch {job.id}")
        raise Interrupted from None
    return job.snapshot


# -- showing results ----------------------------------------------------------


def as_table(result: Any) -> tuple[list[str], list[list[Any]]] | None:
    """Columns and rows of a tabular result (the API's two shapes), else ``None``."""
    if isinstance(result, dict) and isinstance(result.get("columns"), list):
        return [str(c) for c in result["columns"]], list(result.get("rows") or [])
    if isinstance(result, list) and result and all(isinstance(r, dict) for r in result):
        columns = list(dict.fromkeys(key for row in result for key in row))
        return columns, [[row.get(c) for c in columns] for row in result]
    return None


def print_result(result: Any) -> None:
    tabular = as_table(result)
    if tabular is None:
        print_json(result)
        return
    columns, rows = tabular
    table = Table(*columns)
    for row in rows[:TABLE_ROWS_SHOWN]:
        table.add_row(*("" if v is None else str(v) for v in row))
    out.print(table)
    if len(rows) > TABLE_ROWS_SHOWN:
        err.print(f"… and {len(rows) - TABLE_ROWS_SHOWN} more rows (jg result ID --format csv)")


def print_status(snapshot: Snapshot) -> None:
    fields = ["id", "type", "status", "progress", "message", "queue_position", "attempt"]
    fields += ["created_at", "started_at", "poll_timeout", "poll_deadline", "finished_at"]
    fields += ["expires_at"]
    for name in fields:
        if name in snapshot.raw:
            out.print(f"{name:<15} {snapshot.raw[name]}", highlight=False)
    error = snapshot.error
    if error:
        out.print(f"{'error':<15} {error.get('code')}: {error.get('message')}", highlight=False)


# -- commands -----------------------------------------------------------------


def submit_job(client: Client, args: argparse.Namespace) -> Job:
    return client.submit(
        args.type,
        parse_params(args.params),
        id=args.id,
        wait=args.wait,
        poll_timeout=args.poll_timeout,
        retention=args.retention,
        priority=args.priority,
    )


def report_failure(snapshot: Snapshot) -> None:
    code = (snapshot.error or {}).get("code")
    err.print(f"[red]{code}[/]: {escape(snapshot.message)}", highlight=False)


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    job = submit_job(client, args)
    if args.json:
        print_json(job.snapshot.raw)
    else:
        print(job.id)
    return exit_code(job.snapshot)


def cmd_watch(client: Client, args: argparse.Namespace) -> int:
    snapshot = follow(client.job(args.id), args, json_lines=args.json)
    if not args.json and snapshot.error:
        report_failure(snapshot)
    return exit_code(snapshot)


def cmd_run(client: Client, args: argparse.Namespace) -> int:
    job = submit_job(client, args)
    snapshot = follow(job, args)
    if snapshot.status == "FAILED":
        if args.json:
            print_json(snapshot.raw)
        else:
            report_failure(snapshot)
        return EXIT_FAILED
    result = job.result()
    if args.json:
        print_json({**snapshot.raw, "result": result})
    else:
        print_result(result)
    return EXIT_DONE


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    snapshot = client.job(args.id).snapshot
    if args.json:
        print_json(snapshot.raw)
    else:
        print_status(snapshot)
    return exit_code(snapshot)


def cmd_result(client: Client, args: argparse.Namespace) -> int:
    job = client.job(args.id)
    fmt = "json" if args.json else args.format
    if args.output:
        job.download(args.output, format=fmt)
    else:
        job.download(sys.stdout.buffer, format=fmt)
        sys.stdout.buffer.flush()
    return EXIT_DONE


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    snapshot = client.job(args.id).cancel()
    if args.json:
        print_json(snapshot.raw if snapshot else {"id": args.id, "deleted": True})
    elif snapshot is None:
        print(f"{args.id} deleted (it had finished)")
    else:
        print(f"{args.id} {snapshot.status} {snapshot.message}")
    return EXIT_DONE


def cmd_ls(client: Client, args: argparse.Namespace) -> int:
    page_size = min(args.limit, core.MAX_RESULTS_IDS)
    found = client.jobs(status=args.status, type=args.type, page_size=page_size)
    jobs = list(itertools.islice(found, args.limit))
    if args.json:
        print_json([s.raw for s in jobs])
        return EXIT_DONE
    table = Table(Column("id", no_wrap=True), "type", "status", "progress", "created", "message")
    for s in jobs:
        created = str(s.raw.get("created_at", ""))[:19].replace("T", " ")
        table.add_row(s.id, s.type, s.status, f"{s.progress}%", created, s.message)
    out.print(table)
    return EXIT_DONE


def cmd_types(client: Client, args: argparse.Namespace) -> int:
    types = client.job_types()
    if args.json:
        print_json([t.raw for t in types])
        return EXIT_DONE
    table = Table("name", "tabular", "max runtime (s)", "description")
    for t in types:
        table.add_row(t.name, "yes" if t.tabular else "no", str(t.max_runtime), t.description)
    out.print(table)
    return EXIT_DONE


# -- the parser ---------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: given after the command, they win; absent, the top level's stand.
    common.add_argument("--url", default=argparse.SUPPRESS, help="API URL ($JOBGATE_URL)")
    common.add_argument("--key", default=argparse.SUPPRESS, help="API key ($JOBGATE_API_KEY)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON out")
    common.add_argument(
        "--retry-timeout",
        type=float,
        default=argparse.SUPPRESS,
        help="seconds to keep retrying an unreachable or busy server (30)",
    )
    parser = argparse.ArgumentParser(
        prog="jg", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=None, help="API URL ($JOBGATE_URL)")
    parser.add_argument("--key", default=None, help="API key ($JOBGATE_API_KEY)")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
    parser.add_argument("--retry-timeout", type=float, default=30.0, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    def submit_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("type", help="job type (jg types)")
        sub.add_argument("params", nargs="*", metavar="k=v", help="params; values parsed as JSON")
        sub.add_argument("--id", help="your own job id (default: a new ULID)")
        sub.add_argument("--wait", type=float, help="seconds the submit may wait for the end")
        sub.add_argument("--poll-timeout", type=int, help="heartbeat seconds (0: none)")
        sub.add_argument("--retention", type=int, help="seconds a finished job stays readable")
        sub.add_argument(
            "--priority", type=int, help="0-9, 9 the most urgent (default: the job type's)"
        )

    submit_options(command("submit", cmd_submit, "submit a job; print its id"))

    interrupt = "on Ctrl-C, cancel the job (default: leave it running)"
    sub = command("watch", cmd_watch, "follow a job with a progress bar to its end")
    sub.add_argument("id")
    sub.add_argument("--cancel-on-interrupt", action="store_true", help=interrupt)

    sub = command("run", cmd_run, "submit, watch, then print the result")
    submit_options(sub)
    sub.add_argument("--cancel-on-interrupt", action="store_true", help=interrupt)

    command("status", cmd_status, "a job's status").add_argument("id")

    sub = command("result", cmd_result, "a finished job's result (streamed)")
    sub.add_argument("id")
    sub.add_argument("--format", choices=core.FORMATS, default="json")
    sub.add_argument("-o", "--output", help="write to this file (default: stdout)")

    command("cancel", cmd_cancel, "cancel a live job, or delete a finished one").add_argument("id")

    sub = command("ls", cmd_ls, "your jobs, newest first")
    sub.add_argument("--status", choices=["INITIALIZED", "RUNNING", "DONE", "FAILED"])
    sub.add_argument("--type")
    sub.add_argument("--limit", type=int, default=20, help="how many jobs (20)")

    command("types", cmd_types, "the registered job types")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with Client(args.url, args.key, retry_timeout=args.retry_timeout) as client:
            code: int = args.handler(client, args)
            return code
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    except Interrupted:
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        err.print("Interrupted.")
        return EXIT_INTERRUPTED
    except JobFailed as exc:
        err.print(f"[red]{exc.code}[/]: {escape(exc.message)}", highlight=False)
        return EXIT_FAILED
    except Unavailable as exc:
        err.print(f"[red]unavailable[/]: {escape(exc.detail)}", highlight=False)
        return EXIT_UNREACHABLE
    except JobgateError as exc:
        err.print(f"[red]{exc.code or exc.status}[/]: {escape(exc.detail)}", highlight=False)
        return EXIT_REFUSED
    return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
