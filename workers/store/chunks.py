"""Rows and results kept in chunks: the text format both sides share.

A job's published rows are stored as lines (``ctx.publish``, workers/runtime.py):
each line a JSON array of the rows of one write, or, once, a JSON object
``{"columns": [...]}`` naming the table's columns (``ctx.columns``). The lines
go to one Redis key while they fit ``RESULT_CHUNK_BYTES``, then to the next
(a line never straddles two keys), so neither the worker nor the API ever
holds more than about a chunk of them.

A result too large for one key is kept the same way: its chunks, and a small
manifest in the result key (``{"chunked": "rows"}``, or ``{"chunked": "json"}``
for a result that is not a table, its JSON text cut in pieces). This module
turns chunks back into the result's JSON text, byte for byte what one
``orjson.dumps`` of ``{"columns": ..., "rows": ...}`` (or of the row list)
gives, and into rows for csv and ndjson. Pure functions: no Redis.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from workers.config import MIB

# About this many bytes per Redis key (a chunk ends after the write that passes it).
RESULT_CHUNK_BYTES = MIB

MANIFEST_KEY = "chunked"
ROWS = "rows"
JSON = "json"


def manifest(kind: str) -> str:
    """The result key's text for a result kept in chunks."""
    return orjson.dumps({MANIFEST_KEY: kind}).decode()


def manifest_kind(text: str) -> str:
    value = orjson.loads(text)
    kind = value.get(MANIFEST_KEY) if isinstance(value, dict) else None
    if kind not in (ROWS, JSON):
        raise ValueError(f"not a chunked result's manifest: {text[:200]!r}")
    return str(kind)


def header_line(columns: list[Any]) -> bytes:
    return orjson.dumps({"columns": columns}) + b"\n"


def batch_line(rows: list[Any]) -> bytes:
    return orjson.dumps(rows) + b"\n"


def column_names(columns: list[Any] | None) -> list[str] | None:
    """Names of columns given as names or as ``{"name": ..., "type": ...}``."""
    if columns is None:
        return None
    return [c["name"] if isinstance(c, dict) else c for c in columns]


def _lines(chunks: Iterable[str]) -> Iterator[str]:
    # Split on "\n" only: str.splitlines() would also cut at U+2028 and other
    # separators, which orjson leaves unescaped inside strings.
    for chunk in chunks:
        for raw in chunk.split("\n"):
            line = raw.strip(" \t\r")  # JSON's own whitespace, outside the value
            if line:
                yield line


def read_columns(first_chunk: str) -> list[Any] | None:
    """The columns a chunk's header line names (it comes before any rows)."""
    for line in _lines([first_chunk]):
        if line.startswith("{"):
            columns = orjson.loads(line).get("columns")
            return list(columns) if isinstance(columns, list) else None
        return None
    return None


def rows_of(chunks: Iterable[str]) -> Iterator[Any]:
    """Every row of the chunks, in order, one batch parsed at a time."""
    for line in _lines(chunks):
        if line.startswith("["):
            yield from orjson.loads(line)


def rows_json(columns: list[Any] | None, chunks: Iterable[str]) -> Iterator[bytes]:
    """The result's JSON text, piece by piece, without parsing a row:
    ``{"columns":[...],"rows":[...]}`` when there are columns, else ``[...]``."""
    if columns is not None:
        yield b'{"columns":' + orjson.dumps(columns) + b',"rows":['
    else:
        yield b"["
    first = True
    for chunk in chunks:
        pieces = []
        for line in _lines([chunk]):
            if not line.startswith("[") or line == "[]":
                continue
            inner = line[1:-1]
            pieces.append(inner if first else "," + inner)
            first = False
        if pieces:
            yield "".join(pieces).encode()
    yield b"]}" if columns is not None else b"]"


def cut_text(text: str, size: int = RESULT_CHUNK_BYTES) -> Iterator[str]:
    """A result's JSON text in pieces of about ``size`` bytes (by characters,
    so each piece stays valid UTF-8)."""
    step = max(1, size // 4)  # a character is at most 4 bytes
    piece: list[str] = []
    filled = 0
    for start in range(0, len(text), step):
        part = text[start : start + step]
        piece.append(part)
        filled += len(part.encode())
        if filled >= size:
            yield "".join(piece)
            piece, filled = [], 0
    if piece:
        yield "".join(piece)


def cut_rows(columns: list[Any] | None, rows: list[Any], batch: int = 1000) -> Iterator[str]:
    """A table's rows as chunks of lines of about RESULT_CHUNK_BYTES each."""
    pending: list[bytes] = [header_line(columns)] if columns is not None else []
    filled = sum(len(p) for p in pending)
    for start in range(0, len(rows), batch):
        line = batch_line(rows[start : start + batch])
        pending.append(line)
        filled += len(line)
        if filled >= RESULT_CHUNK_BYTES:
            yield b"".join(pending).decode()
            pending, filled = [], 0
    if pending:
        yield b"".join(pending).decode()
