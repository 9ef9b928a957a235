"""Chunked results' text format (workers/store/chunks.py) and its rendering."""

from __future__ import annotations

import csv
import io
import itertools
from typing import Any

import orjson
import pytest

from app.formats import NotAcceptable, format_chunked, format_partial_chunks
from workers.store import chunks
from workers.store.chunks import (
    RESULT_CHUNK_BYTES,
    batch_line,
    cut_rows,
    cut_text,
    header_line,
    manifest,
    manifest_kind,
    read_columns,
    rows_json,
    rows_of,
)

COLUMNS: list[Any] = [{"name": "id", "type": "int4"}, {"name": "name", "type": "text"}]


def table(count: int) -> list[list[object]]:
    return [[i, f'name-{i}, "quoted"\n'] for i in range(count)]


def published(columns: list[Any] | None, rows: list[list[object]], batch: int) -> list[str]:
    """Chunks as JobContext writes them: a header, then a line per write,
    a new chunk once one holds RESULT_CHUNK_BYTES."""
    lines = [header_line(columns)] if columns is not None else []
    lines += [batch_line(rows[i : i + batch]) for i in range(0, len(rows), batch)]
    out: list[str] = []
    current = b""
    for line in lines:
        if len(current) >= RESULT_CHUNK_BYTES:
            out.append(current.decode())
            current = b""
        current += line
    return [*out, current.decode()]


@pytest.mark.parametrize("count", [0, 1, 5_000, 60_000])
def test_rows_json_is_byte_for_byte_the_whole_document(count: int) -> None:
    rows = table(count)
    pieces = published(COLUMNS, rows, batch=700)
    if count == 60_000:
        assert len(pieces) > 1

    text = b"".join(rows_json(read_columns(pieces[0]), pieces))

    assert text == orjson.dumps({"columns": COLUMNS, "rows": rows})
    assert list(rows_of(pieces)) == rows


def test_rows_without_columns_are_a_list() -> None:
    rows = [{"a": 1}, {"b": "x"}]
    pieces = published(None, [[r] for r in rows], batch=1)
    assert read_columns(pieces[0]) is None
    assert b"".join(rows_json(None, pieces)) == orjson.dumps([[r] for r in rows])


def test_cut_text_keeps_every_character_and_bounds_pieces() -> None:
    text = "é" * 300_000 + "x" * 2_000_000
    pieces = list(cut_text(text))
    assert "".join(pieces) == text
    assert all(len(p.encode()) < RESULT_CHUNK_BYTES * 2 for p in pieces)
    assert len(pieces) >= 2


def test_cut_rows_round_trips_a_table() -> None:
    rows = table(50_000)
    pieces = list(cut_rows(["id", "name"], rows))
    assert len(pieces) >= 2
    assert b"".join(rows_json(read_columns(pieces[0]), pieces)) == orjson.dumps(
        {"columns": ["id", "name"], "rows": rows}
    )


def test_manifest_kinds() -> None:
    assert manifest_kind(manifest(chunks.ROWS)) == "rows"
    assert manifest_kind(manifest(chunks.JSON)) == "json"
    with pytest.raises(ValueError):
        manifest_kind('{"columns": []}')


def source(pieces: list[str]):
    reads = itertools.count()

    def again():
        next(reads)
        return iter(pieces)

    return again, reads


def test_chunked_csv_and_ndjson_stream_every_row() -> None:
    rows = table(30_000)
    pieces = published(COLUMNS, rows, batch=1000)
    factory, _reads = source(pieces)

    body, content_type = format_chunked("rows", factory, "csv")
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\r\n")
    writer.writerow(["id", "name"])
    writer.writerows(rows)
    assert b"".join(body) == expected.getvalue().encode()
    assert content_type == "text/csv; charset=utf-8"

    body, _ = format_chunked("rows", factory, "ndjson")
    lines = b"".join(body).splitlines()
    assert [orjson.loads(line) for line in lines] == [{"id": r[0], "name": r[1]} for r in rows]


def test_chunked_object_rows_get_a_header_of_every_key() -> None:
    pieces = published(None, [[{"a": 1}], [{"b": 2}]], batch=1)
    pieces = [p.replace("[[", "[").replace("]]", "]") for p in pieces]
    factory, _ = source(pieces)
    body, _ = format_chunked("rows", factory, "csv")
    assert b"".join(body) == b"a,b\r\n1,\r\n,2\r\n"


def test_chunked_nested_rows_are_refused_before_the_first_byte() -> None:
    factory, _ = source(published(["a"], [[[1, 2]]], batch=1))
    with pytest.raises(NotAcceptable):
        format_chunked("rows", factory, "csv")


def test_chunked_json_text_is_json_only() -> None:
    factory, _ = source(['{"a": "', 'b"}'])
    body, _ = format_chunked("json", factory, "json")
    assert b"".join(body) == b'{"a": "b"}'
    with pytest.raises(NotAcceptable):
        format_chunked("json", factory, "ndjson")


def test_partial_rows_are_a_snapshot_of_the_first_read() -> None:
    """Rows published between the check and the rendering are not sent unchecked."""

    stored = [header_line(["a"]).decode() + batch_line([[1], [2]]).decode()]

    def chunks():  # the job appends after every read
        current = list(stored)
        stored[-1] += batch_line([[{"nested": [1]}]]).decode()
        stored.append(batch_line([[9]]).decode())
        return iter(current)

    body, _ = format_partial_chunks(chunks, "csv", None)
    assert b"".join(body) == b"a\r\n1\r\n2\r\n"
