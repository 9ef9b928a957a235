"""A job's result in the format the client asks for (docs/api.md §3, GET /v1/jobs/{id}/result).

Pure functions, no Flask: the route picks a format with ``choose_format`` and
hands ``format_result``'s chunks to a streaming response. JSON is the stored text as
is; ``ndjson`` and ``csv`` exist only for tabular results, and a result that
cannot take the asked format is a 406 (``NotAcceptable``), raised before the
first byte is produced so it can still become a problem+json response.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeGuard

import orjson
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from workers.errors import JobgateError
from workers.store.chunks import JSON, column_names, read_columns, rows_json, rows_of

FORMATS = ("json", "ndjson", "csv")

MEDIA_TYPES = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv",
}

# The full Content-Type values. Give them to werkzeug as ``content_type=``:
# as ``mimetype=`` it appends a second "; charset=utf-8" to text/csv.
CONTENT_TYPES = {
    "json": MEDIA_TYPES["json"],
    "ndjson": MEDIA_TYPES["ndjson"],
    "csv": f"{MEDIA_TYPES['csv']}; charset=utf-8",
}

# Media types a client may ask for in Accept, in order of preference on a tie
# (so "*/*" and "application/*" mean json). ndjson goes by several names.
ACCEPTED_MEDIA_TYPES = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "text/csv": "csv",
}

# Rows are produced one at a time and sent in chunks of about this many bytes:
# the body is never built whole, and a large table is not one write per row.
CHUNK_SIZE = 16 * 1024

Scalar = str | int | float | bool | None
Row = list[Scalar] | dict[str, Scalar]
Table = tuple[list[str] | None, Iterator[Row]]


class NotAcceptable(JobgateError):
    code = "NOT_ACCEPTABLE"
    title = "Not acceptable"


# --- choosing a format ---------------------------------------------------------


def choose_format(query_format: str | None, accept_header: str | None) -> str:
    """The format to answer in: ``?format=`` when given, else from Accept.

    The query parameter wins because it is what a browser or curl user can
    set by hand; an Accept that names nothing we serve is a 406, not json.
    """
    if query_format is not None:
        return _named_format(query_format)
    return _negotiated_format(accept_header)


def _named_format(query_format: str) -> str:
    name = query_format.strip().lower()
    if name not in FORMATS:
        raise NotAcceptable(
            f"Unknown format {query_format!r}; use one of {', '.join(FORMATS)}.",
            formats=list(FORMATS),
        )
    return name


def _negotiated_format(accept_header: str | None) -> str:
    """Werkzeug's q-value matching over the media types we serve."""
    accept = parse_accept_header(accept_header, MIMEAccept)
    if not accept:  # absent, empty or nothing parseable: the client takes anything
        return "json"
    best = accept.best_match(ACCEPTED_MEDIA_TYPES)
    if best is None:
        raise NotAcceptable(
            f"Accept names none of {', '.join(MEDIA_TYPES.values())}.",
            formats=list(FORMATS),
        )
    return ACCEPTED_MEDIA_TYPES[best]


# --- what is a table -----------------------------------------------------------


def table_of(value: object) -> Table | None:
    """``(columns, rows)`` when ``value`` is tabular, else None.

    Tabular is ``{"columns": [str, ...], "rows": [[...], ...]}`` (columns
    returned, every row a list of scalars as wide as the columns) or a list
    of flat objects (columns None: each row carries its own keys). Nested
    values are refused because neither a CSV field nor an ndjson table row
    can hold them without inventing an encoding.
    """
    if isinstance(value, dict):
        return _columns_and_rows(value)
    if isinstance(value, list) and all(_is_flat_object(item) for item in value):
        return None, iter(value)
    return None


def _columns_and_rows(value: dict[str, Any]) -> Table | None:
    # Any other key would be lost in csv/ndjson, so such a result is not a table.
    if value.keys() != {"columns", "rows"}:
        return None
    columns, rows = value["columns"], value["rows"]
    if not _is_column_list(columns) or not isinstance(rows, list):
        return None
    if not all(_is_flat_list(row, len(columns)) for row in rows):
        return None
    return column_names(columns), iter(rows)


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float)  # bool is an int


def _is_column_list(value: object) -> TypeGuard[list[Any]]:
    """Names for a header, each once (an ndjson object has no duplicate keys):
    strings, or objects with a string ``name`` (and a ``type``: sql.query's)."""
    if not isinstance(value, list):
        return False
    names = [c.get("name") if isinstance(c, dict) else c for c in value]
    return all(isinstance(name, str) for name in names) and len(set(names)) == len(names)


def _is_flat_object(value: object) -> TypeGuard[dict[str, Scalar]]:
    return isinstance(value, dict) and all(_is_scalar(cell) for cell in value.values())


def _is_flat_list(value: object, width: int | None) -> TypeGuard[list[Scalar]]:
    return (
        isinstance(value, list)
        and (width is None or len(value) == width)
        and all(_is_scalar(cell) for cell in value)
    )


def _not_tabular() -> NotAcceptable:
    return NotAcceptable(
        "The result is not tabular (a list of flat objects or {columns, rows}); "
        "it is available as json only.",
        formats=["json"],
    )


# --- formatting --------------------------------------------------------------------


def format_result(
    result_json: str, fmt: str, type_tabular: bool = True
) -> tuple[Iterable[bytes], str]:
    """A finished job's result as ``(body chunks, Content-Type)``.

    json is the stored text byte for byte: parsing and encoding it again
    would cost time and could change numbers. csv and ndjson are generated
    lazily; the result is checked for being tabular first, so a 406 is
    raised here rather than in the middle of a streamed body. A job type
    declared without ``tabular=True`` (``type_tabular`` False) never makes a
    table: csv and ndjson are refused without reading the result.
    """
    content_type = _content_type(fmt)
    if fmt == "json":
        return [result_json.encode()], content_type
    if not type_tabular:
        raise NotAcceptable(
            "This job type's results are not tables; they are available as json only.",
            formats=["json"],
        )
    table = table_of(orjson.loads(result_json))
    if table is None:
        raise _not_tabular()
    columns, rows = table
    return _stream(fmt, columns, rows), content_type


ChunkSource = Callable[[], Iterator[str]]


def format_chunked(
    kind: str, chunks: ChunkSource, fmt: str, type_tabular: bool = True
) -> tuple[Iterable[bytes], str]:
    """A result kept in chunks as ``(body chunks, Content-Type)``, produced a
    chunk at a time: ``chunks()`` reads them afresh from Redis each call.

    json is the result's text, built from the chunks without parsing a row.
    csv and ndjson first read every row once to check the result is a table
    (a 406 must come before the first byte; a header of object rows needs
    every key), then stream them in a second pass. Neither pass holds more
    than a chunk.
    """
    content_type = _content_type(fmt)
    if kind == JSON:
        if fmt != "json":
            raise _not_tabular()
        return (chunk.encode() for chunk in chunks()), content_type
    source = chunks()
    first = next(source, "")
    columns = read_columns(first)
    if fmt == "json":
        return rows_json(columns, itertools.chain([first], source)), content_type
    if not type_tabular:
        raise NotAcceptable(
            "This job type's results are not tables; they are available as json only.",
            formats=["json"],
        )
    names = column_names(columns)
    width = None if names is None else len(names)
    keys: dict[str, None] = {}
    for row in rows_of(itertools.chain([first], source)):
        if _is_flat_object(row):
            keys.update(dict.fromkeys(row))
        elif not _is_flat_list(row, width):
            raise _not_tabular()
    header = names if names is not None else (list(keys) or None)
    rows = rows_of(chunks())
    if fmt == "csv":
        return _batched(_csv_lines(header, rows)), content_type
    return _batched(_ndjson_lines(names, rows)), content_type


def format_partial_rows(
    batches: str, fmt: str, columns: list[str] | None
) -> tuple[Iterable[bytes], str]:
    """A running job's rows so far, from the text of its partial rows."""
    return format_partial_chunks(lambda: iter([batches]), fmt, columns)


def format_partial_chunks(
    chunks: ChunkSource, fmt: str, columns: list[str] | None
) -> tuple[Iterable[bytes], str]:
    """A running job's rows so far as ``(body chunks, Content-Type)``, read a
    chunk at a time (``chunks()`` reads them afresh each call).

    The stored partial rows are lines: a JSON array of the rows of each write,
    and maybe a ``{"columns": [...]}`` header (``ctx.columns``). A first pass
    checks every row and notes how long each chunk was; the second renders
    exactly that much, so rows published meanwhile neither appear unchecked
    nor change the answer. Same formats as ``format_result``, so a client
    reads a partial result the way it will read the final one. ``columns``
    are the job type's declared columns, if it publishes rows as lists.
    """
    content_type = _content_type(fmt)
    seen: list[int] = []
    header: list[Any] | None = None
    for chunk in chunks():
        if not seen:
            header = read_columns(chunk)
        seen.append(len(chunk))
    named = header if header is not None else columns
    names = column_names(named)
    width = None if names is None else len(names)

    def snapshot() -> Iterator[str]:
        for length, chunk in zip(seen, chunks(), strict=False):
            yield chunk[:length]

    all_lists, flat = True, True
    keys: dict[str, None] = {}
    for row in rows_of(snapshot()):
        if isinstance(row, list):
            flat = flat and _is_flat_list(row, width)
        else:
            all_lists = False
            if _is_flat_object(row):
                keys.update(dict.fromkeys(row))
            else:
                flat = False
    if fmt == "json":
        return rows_json(named if all_lists else None, snapshot()), content_type
    if not flat:
        raise _not_tabular()
    rows = rows_of(snapshot())
    if fmt == "csv":
        return _batched(_csv_lines(names if names is not None else list(keys) or None, rows)), (
            content_type
        )
    return _batched(_ndjson_lines(names, rows)), content_type


def _content_type(fmt: str) -> str:
    if fmt not in CONTENT_TYPES:
        raise NotAcceptable(f"Unknown format {fmt!r}.", formats=list(FORMATS))
    return CONTENT_TYPES[fmt]


def _stream(fmt: str, columns: list[str] | None, rows: Iterator[Row]) -> Iterator[bytes]:
    if fmt == "csv":
        # Objects name their columns: the header needs every row's keys first.
        # Listing the rows copies references only; the text stays lazy.
        row_list = list(rows)
        header = columns if columns is not None else _union_of_keys(row_list)
        return _batched(_csv_lines(header, row_list))
    return _batched(_ndjson_lines(columns, rows))


def _union_of_keys(rows: list[Row]) -> list[str] | None:
    """Every key of the object rows, in first-seen order; None when there are none."""
    keys = dict.fromkeys(key for row in rows if isinstance(row, dict) for key in row)
    return list(keys) or None


class _Echo:
    """A file whose write() hands the line back: csv.writer formats one row at a time."""

    def write(self, line: str) -> str:
        return line


def _csv_lines(header: list[str] | None, rows: Iterable[Row]) -> Iterator[bytes]:
    """RFC 4180 lines: CRLF, fields quoted only when they need it."""
    writer = csv.writer(_Echo(), lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    if header is not None:
        yield writer.writerow(header).encode()
    for row in rows:
        cells = [row.get(name) for name in header or ()] if isinstance(row, dict) else row
        yield writer.writerow([_csv_field(cell) for cell in cells]).encode()


def _csv_field(cell: Scalar) -> str | int | float:
    """JSON's spelling, not Python's: null is empty, booleans are true/false."""
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "true" if cell else "false"
    return cell


def _ndjson_lines(columns: list[str] | None, rows: Iterable[Row]) -> Iterator[bytes]:
    for row in rows:
        yield orjson.dumps(_as_object(columns, row), option=orjson.OPT_APPEND_NEWLINE)


def _as_object(columns: list[str] | None, row: Row) -> Row:
    """A list row keyed by the columns, so each ndjson line stands on its own."""
    if columns is not None and isinstance(row, list):
        return dict(zip(columns, row, strict=True))
    return row


def _batched(pieces: Iterable[bytes], size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Pieces gathered into chunks of at least ``size`` bytes (the last may be short)."""
    batch: list[bytes] = []
    filled = 0
    for piece in pieces:
        batch.append(piece)
        filled += len(piece)
        if filled >= size:
            yield b"".join(batch)
            batch.clear()
            filled = 0
    if batch:
        yield b"".join(batch)
