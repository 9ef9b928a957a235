"""``sql.query``: one read-only statement against a source of ``JOBGATE_SQL_SOURCES``.

A reference job type for work that runs in another system:

- read-only *by the database*, never by parsing SQL: PostgreSQL connections
  open with ``default_transaction_read_only=on`` and every transaction is
  ``READ ONLY``; SQLite files are opened ``mode=ro`` with ATTACH disabled. A
  write ends FAILED/JOB_ERROR with the database's own message;
- one statement: parameters are always bound (``params``, never formatting),
  and PostgreSQL's extended protocol refuses a second statement, as SQLite's
  ``execute`` does;
- rows stream from a server-side cursor (PostgreSQL) or the SQLite statement
  in batches into the partial result (``ctx.publish``), with progress as rows
  fetched (a percent from the planner's estimate on PostgreSQL);
- a stop reaches the database: ``ctx.on_stop`` cancels the running statement
  on the server (psycopg's ``cancel_safe``, SQLite's ``interrupt``) the moment
  the job is cancelled, times out or passes its time limit;
- an SQL error ends FAILED/JOB_ERROR with ``details``: ``sqlstate``,
  ``message`` and ``position`` (1-based, in the statement as submitted).

Sources are named; their URLs (and passwords) never leave the worker.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import decimal
import functools
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import psycopg
from marshmallow import Schema, ValidationError, fields, validate

from workers.config import Settings, redact_url
from workers.registry import job
from workers.runtime import JobContext, JobFailure, RowsResult

# Rows fetched per round trip to the database (and published per batch).
BATCH_ROWS = 1000
# The server-side cursor's name (the DECLARE's text is what error positions count from).
CURSOR = "jobgate_rows"
DECLARE_PREFIX = f'DECLARE "{CURSOR}" CURSOR FOR '
SQLITE_PREFIX = "sqlite:///"

Scalar = str | int | float | bool | None


def _params_value(value: Any) -> None:
    scalars = (str, int, float, bool, type(None))
    if isinstance(value, list):
        ok = all(isinstance(v, scalars) for v in value)
    elif isinstance(value, dict):
        ok = all(isinstance(v, scalars) for v in value.values())
    else:
        ok = value is None
    if not ok:
        raise ValidationError(
            "Bound parameters: a list (positional) or an object (named) of scalars."
        )


@functools.cache
def _params_schema(names: tuple[str, ...]) -> type[Schema]:
    """The params schema for these source names (a choice among them)."""
    choice = validate.OneOf(names, error="Unknown source {input!r}; configured: {choices}.")

    class QueryParams(Schema):
        source = fields.String(
            required=True,
            validate=choice,
            metadata={"description": "A source name of JOBGATE_SQL_SOURCES.", "enum": list(names)},
        )
        sql = fields.String(required=True, validate=validate.Length(1, 100_000))
        params = fields.Raw(
            load_default=None,
            validate=_params_value,
            metadata={
                "description": "Bound parameters: a list for %s (PostgreSQL) or ? (SQLite), "
                "an object for %(name)s or :name."
            },
        )
        max_rows = fields.Integer(
            strict=True, load_default=100_000, validate=validate.Range(1, 10_000_000)
        )

    return QueryParams


def _params_for(settings: Settings) -> type[Schema]:
    return _params_schema(tuple(settings.sql_sources.names()))


def _available(settings: Settings) -> bool:
    return bool(settings.sql_sources)


# -- values ------------------------------------------------------------------


def cell(value: Any) -> Scalar:
    """A database value as a flat JSON value: exact numbers as text where a
    JSON number would round them, JSON columns as their text, bytes as base64."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, uuid.UUID | datetime.timedelta):
        return str(value)
    return str(value)


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float)


def rows_of(raw: list[Any]) -> list[list[Scalar]]:
    return [[v if _plain(v) else cell(v) for v in row] for row in raw]


def sqlite_type(value: Any) -> str | None:
    return {int: "integer", float: "real", str: "text", bytes: "blob"}.get(type(value))


# -- errors ------------------------------------------------------------------


def sql_failure(message: str, sqlstate: str | None, position: int | None) -> JobFailure:
    details: dict[str, Any] = {"sqlstate": sqlstate, "message": message, "position": position}
    return JobFailure(message, details)


def pg_failure(exc: psycopg.Error, offset: int = 0) -> JobFailure:
    diag = exc.diag
    message = diag.message_primary or str(exc).strip()
    position = int(diag.statement_position) - offset if diag.statement_position else None
    return sql_failure(message, exc.sqlstate, position)


# -- the job ---------------------------------------------------------------------


@job(
    "sql.query",
    params=_params_schema(()),
    params_for=_params_for,
    available=_available,
    tabular=True,
    description="Runs one read-only SQL statement on a configured source; rows stream in.",
)
def query(
    ctx: JobContext,
    source: str,
    sql: str,
    params: list[Any] | dict[str, Any] | None = None,
    max_rows: int = 100_000,
) -> RowsResult:
    url = ctx.settings.sql_sources.url(source)
    if url is None:
        raise JobFailure(f"No source {source!r} on this worker (JOBGATE_SQL_SOURCES).")
    if url.startswith(SQLITE_PREFIX):
        return _sqlite(ctx, url[len(SQLITE_PREFIX) :], sql, params, max_rows)
    return _postgres(ctx, url, sql, params, max_rows)


def _stream(
    ctx: JobContext,
    fetch: Callable[[int], list[Any]],
    max_rows: int,
    estimate: int | None,
) -> RowsResult:
    """Fetch batches until the rows end or ``max_rows``; each batch is
    published (partial rows) and counted in the progress."""
    fetched = 0
    while fetched < max_rows:
        batch = fetch(min(BATCH_ROWS, max_rows - fetched))
        if not batch:
            return ctx.rows_result()
        fetched += len(batch)
        ctx.publish(rows_of(batch))
        expected = min(estimate, max_rows) if estimate else None
        percent = fetched * 100 // expected if expected else 0
        ctx.progress(percent, f"{fetched} rows fetched")
        ctx.flush()  # the next fetch may wait long: these rows are visible meanwhile
    # max_rows reached: truncated if the statement had more.
    more = bool(fetch(1))
    return ctx.rows_result(truncated=more)


def _postgres(
    ctx: JobContext, url: str, sql: str, params: list[Any] | dict[str, Any] | None, max_rows: int
) -> RowsResult:
    # Always bound (an empty list without params): the extended protocol then
    # refuses a second statement, and a literal % is written %% by us.
    bound: Any = params
    if params is None:
        sql, bound = sql.replace("%", "%%"), []
    try:
        conn = psycopg.connect(
            url,
            options="-c default_transaction_read_only=on",
            connect_timeout=10,
            # What pg_stat_activity shows: the job behind each backend.
            application_name=f"jobgate:{ctx.job_id}"[:63],
        )
    except psycopg.Error as exc:
        raise JobFailure(f"Cannot connect to source: {redact(str(exc), url)}") from None
    conn.read_only = True
    unregister = ctx.on_stop(lambda: _cancel_pg(conn))
    try:
        estimate = _estimate(conn, sql, bound)
        ctx.progress(0, "running the statement")
        cursor: Any = conn.cursor(name=CURSOR)
        try:
            cursor.execute(sql, bound)
        except psycopg.Error as exc:
            ctx.check()
            cannot_declare = exc.sqlstate == "42601" and exc.diag.statement_position == str(
                len(DECLARE_PREFIX) + 1
            )
            if not cannot_declare:
                raise pg_failure(exc, len(DECLARE_PREFIX)) from None
            # Not a query a cursor can hold (SHOW, INSERT, ...): run it as is,
            # still in a read-only transaction (a write is refused there).
            conn.rollback()
            cursor = conn.cursor()
            cursor.execute(sql, bound)
        if cursor.description is None:
            ctx.columns([])
            return ctx.rows_result()
        ctx.columns(
            [
                {"name": column.name, "type": _pg_type(conn, column.type_code)}
                for column in cursor.description
            ]
        )
        return _stream(ctx, cursor.fetchmany, max_rows, estimate)
    except psycopg.Error as exc:
        ctx.check()  # a stop cancelled the statement: JobStopped, not an SQL error
        raise pg_failure(exc) from None
    finally:
        unregister()
        with contextlib.suppress(psycopg.Error):
            conn.close()


def _cancel_pg(conn: psycopg.Connection[Any]) -> None:
    """Cancel the running statement on the server (from the watchdog's thread)."""
    conn.cancel_safe(timeout=5)


def _pg_type(conn: psycopg.Connection[Any], oid: int) -> str:
    info = conn.adapters.types.get(oid)
    return info.name if info is not None else str(oid)


def _estimate(conn: psycopg.Connection[Any], sql: str, bound: Any) -> int | None:
    """The planner's estimate of the rows (None when it has none)."""
    try:
        with conn.cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, bound)
            row = cursor.fetchone()
        conn.rollback()
    except psycopg.Error:
        conn.rollback()
        return None
    try:
        plan = row[0][0]["Plan"] if row else None
        return int(plan["Plan Rows"]) if plan else None
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def redact(text: str, url: str) -> str:
    """An error's text without the source's password (should the driver quote it)."""
    shown = redact_url(url)
    if shown != url:
        secret = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
        if secret:
            text = text.replace(secret, "***")
    return text


def _sqlite(
    ctx: JobContext,
    path: str,
    sql: str,
    params: list[Any] | dict[str, Any] | None,
    max_rows: int,
) -> RowsResult:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    except sqlite3.Error as exc:
        raise JobFailure(f"Cannot open source: {exc}") from None
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    unregister = ctx.on_stop(conn.interrupt)
    try:
        ctx.progress(0, "running the statement")
        cursor = conn.execute(sql, params if params is not None else ())
        if cursor.description is None:
            ctx.columns([])
            return ctx.rows_result()
        first = cursor.fetchmany(min(BATCH_ROWS, max_rows))
        ctx.columns(
            [
                {"name": column[0], "type": _first_type(first, i)}
                for i, column in enumerate(cursor.description)
            ]
        )
        return _stream(ctx, _replay(first, cursor.fetchmany), max_rows, None)
    except sqlite3.Error as exc:
        ctx.check()
        raise sql_failure(str(exc), getattr(exc, "sqlite_errorname", None), None) from None
    finally:
        unregister()
        conn.close()


def _first_type(rows: list[Any], index: int) -> str | None:
    """SQLite's columns have no fixed type: the first non-null value's."""
    for row in rows:
        if row[index] is not None:
            return sqlite_type(row[index])
    return None


def _replay(first: list[Any], fetch: Callable[[int], list[Any]]) -> Callable[[int], list[Any]]:
    """``fetch``, which hands out ``first`` before fetching anything."""
    pending: Iterator[list[Any]] = iter([first])

    def again(size: int) -> list[Any]:
        batch = next(pending, None)
        return batch if batch is not None else fetch(size)

    return again
