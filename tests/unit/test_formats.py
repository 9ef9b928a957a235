"""app/formats.py: a result as json, ndjson or csv (docs/api.md §3, GET /v1/jobs/{id}/result)."""

from __future__ import annotations

import csv
import io
from collections.abc import Generator, Iterable
from typing import Any

import orjson
import pytest

from app.errors import http_status
from app.formats import (
    CHUNK_SIZE,
    FORMATS,
    NotAcceptable,
    choose_format,
    format_partial_rows,
    format_result,
    table_of,
)
from workers.errors import JobgateError

TRICKY = ["a,b", 'say "hi"', "two\nlines", "crlf\r\nend", "héllo ✓ 日本", " padded "]


def joined(chunks: Iterable[bytes]) -> bytes:
    return b"".join(chunks)


def rendered(result: Any, fmt: str) -> bytes:
    chunks, _ = format_result(orjson.dumps(result).decode(), fmt)
    return joined(chunks)


def csv_records(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


def ndjson_values(body: bytes) -> list[Any]:
    assert body == b"" or body.endswith(b"\n")
    return [orjson.loads(line) for line in body.split(b"\n")[:-1]]


def ndjson_text(*rows: Any) -> str:
    """Rows as the store keeps a partial result: one batch a line (here, two)."""
    half = len(rows) // 2
    batches = [list(rows[:half]), list(rows[half:])]
    return "".join(orjson.dumps(batch).decode() + "\n" for batch in batches if batch)


# --- json ------------------------------------------------------------------------


def test_json_is_the_stored_text_byte_for_byte() -> None:
    stored = '{"z": 1.0,  "a": [1e2, 12345678901234567890, "h\\u00e9", "é"]}'
    chunks, content_type = format_result(stored, "json")
    assert joined(chunks) == stored.encode()
    assert content_type == "application/json"


def test_json_takes_any_result_tabular_or_not() -> None:
    assert rendered({"answer": {"nested": [1, 2]}}, "json") == b'{"answer":{"nested":[1,2]}}'


# --- csv -------------------------------------------------------------------------


def test_csv_quotes_commas_quotes_newlines_and_unicode() -> None:
    body = rendered({"columns": ["text", "n"], "rows": [[value, 1] for value in TRICKY]}, "csv")
    assert csv_records(body) == [["text", "n"], *[[value, "1"] for value in TRICKY]]


def test_csv_quotes_only_fields_that_need_it() -> None:
    body = rendered({"columns": ["a", "b"], "rows": [["plain", "x,y"]]}, "csv")
    assert body == b'a,b\r\nplain,"x,y"\r\n'


def test_csv_lines_end_with_crlf() -> None:
    body = rendered([{"a": 1}, {"a": 2}], "csv")
    assert body == b"a\r\n1\r\n2\r\n"


def test_csv_writes_null_as_empty_and_booleans_as_true_false() -> None:
    body = rendered({"columns": ["x", "y", "z", "n"], "rows": [[None, True, False, 2.5]]}, "csv")
    assert body == b"x,y,z,n\r\n,true,false,2.5\r\n"


def test_csv_header_is_the_union_of_keys_in_first_seen_order() -> None:
    body = rendered([{"b": 1, "a": 2}, {"c": 3, "a": 4}, {"d": 5}], "csv")
    assert csv_records(body)[0] == ["b", "a", "c", "d"]


def test_csv_leaves_a_missing_key_empty() -> None:
    body = rendered([{"a": 1, "b": 2}, {"b": 3}], "csv")
    assert csv_records(body) == [["a", "b"], ["1", "2"], ["", "3"]]


def test_csv_content_type_says_utf8() -> None:
    _, content_type = format_result('[{"a": 1}]', "csv")
    assert content_type == "text/csv; charset=utf-8"


# --- ndjson ------------------------------------------------------------------------


def test_ndjson_keys_each_row_by_the_columns() -> None:
    body = rendered({"columns": ["id", "name"], "rows": [[1, "a"], [2, None]]}, "ndjson")
    assert ndjson_values(body) == [{"id": 1, "name": "a"}, {"id": 2, "name": None}]


def test_ndjson_of_a_list_of_objects_is_each_object() -> None:
    objects = [{"b": 1, "a": "x"}, {"c": True}]
    body = rendered(objects, "ndjson")
    assert ndjson_values(body) == objects
    assert body.startswith(b'{"b":1,"a":"x"}\n')


def test_ndjson_lines_parse_back_with_tricky_strings() -> None:
    objects = [{"text": value} for value in TRICKY]
    assert ndjson_values(rendered(objects, "ndjson")) == objects


def test_ndjson_content_type() -> None:
    _, content_type = format_result("[]", "ndjson")
    assert content_type == "application/x-ndjson"


# --- what is tabular -----------------------------------------------------------------

NOT_TABULAR = [
    pytest.param({"answer": 42}, id="object"),
    pytest.param(42, id="scalar"),
    pytest.param([1, 2], id="list-of-scalars"),
    pytest.param([[1, 2]], id="list-of-lists"),
    pytest.param([{"a": {"b": 1}}], id="nested-object"),
    pytest.param([{"a": [1]}], id="object-with-list"),
    pytest.param({"columns": ["a"], "rows": [1]}, id="row-not-a-list"),
    pytest.param({"columns": ["a"], "rows": [[1, 2]]}, id="row-wider-than-columns"),
    pytest.param({"columns": ["a", "a"], "rows": []}, id="duplicate-columns"),
    pytest.param({"columns": [1], "rows": []}, id="column-not-a-string"),
    pytest.param({"columns": ["a"], "rows": [], "total": 0}, id="extra-key"),
]


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
@pytest.mark.parametrize("result", NOT_TABULAR)
def test_non_tabular_result_is_not_acceptable_as_csv_or_ndjson(result: Any, fmt: str) -> None:
    with pytest.raises(NotAcceptable, match="not tabular") as raised:
        format_result(orjson.dumps(result).decode(), fmt)
    assert raised.value.extra["formats"] == ["json"]


@pytest.mark.parametrize("result", NOT_TABULAR)
def test_non_tabular_result_is_fine_as_json(result: Any) -> None:
    assert orjson.loads(rendered(result, "json")) == result


def test_table_of_columns_and_rows_returns_the_columns() -> None:
    table = table_of({"columns": ["a", "b"], "rows": [[1, 2]]})
    assert table is not None
    columns, rows = table
    assert columns == ["a", "b"]
    assert list(rows) == [[1, 2]]


def test_table_of_a_list_of_objects_has_no_declared_columns() -> None:
    table = table_of([{"a": 1}])
    assert table is not None
    columns, rows = table
    assert columns is None
    assert list(rows) == [{"a": 1}]


def test_an_empty_list_is_an_empty_table() -> None:
    assert rendered([], "csv") == b""
    assert rendered([], "ndjson") == b""


def test_not_acceptable_is_a_406_jobgate_error() -> None:
    error = NotAcceptable("nope")
    assert isinstance(error, JobgateError)
    assert (http_status(error), error.code, error.title) == (
        406,
        "NOT_ACCEPTABLE",
        "Not acceptable",
    )


def test_an_unknown_format_is_not_acceptable() -> None:
    with pytest.raises(NotAcceptable):
        format_result("[]", "xml")


# --- streaming -------------------------------------------------------------------------

# About 50 bytes a row: the body is several times CHUNK_SIZE.
THOUSAND_ROWS = {"columns": ["id", "name"], "rows": [[i, f"{i:04d}" * 10] for i in range(1000)]}


def test_csv_is_streamed_in_several_chunks_from_a_generator() -> None:
    chunks, _ = format_result(orjson.dumps(THOUSAND_ROWS).decode(), "csv")
    assert isinstance(chunks, Generator)
    pieces = list(chunks)
    assert len(pieces) > 1
    assert all(len(piece) >= CHUNK_SIZE for piece in pieces[:-1])
    assert len(csv_records(b"".join(pieces))) == 1001


def test_ndjson_is_streamed_in_several_chunks_from_a_generator() -> None:
    chunks, _ = format_result(orjson.dumps(THOUSAND_ROWS).decode(), "ndjson")
    assert isinstance(chunks, Generator)
    pieces = list(chunks)
    assert len(pieces) > 1
    assert all(len(piece) >= CHUNK_SIZE for piece in pieces[:-1])
    assert len(ndjson_values(b"".join(pieces))) == 1000


# --- choosing a format -------------------------------------------------------------------


def test_query_format_wins_over_accept() -> None:
    assert choose_format("csv", "application/json") == "csv"


def test_query_format_ignores_case() -> None:
    assert choose_format("NDJSON", None) == "ndjson"


def test_unknown_query_format_is_not_acceptable_and_lists_the_formats() -> None:
    with pytest.raises(NotAcceptable, match="json, ndjson, csv") as raised:
        choose_format("xml", None)
    assert raised.value.extra["formats"] == list(FORMATS)


def test_empty_query_format_is_not_acceptable() -> None:
    with pytest.raises(NotAcceptable):
        choose_format("", "text/csv")


@pytest.mark.parametrize("accept", [None, "", "*/*", "application/*", "text/html, */*;q=0.1"])
def test_missing_or_wildcard_accept_means_json(accept: str | None) -> None:
    assert choose_format(None, accept) == "json"


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        ("text/csv", "csv"),
        ("text/*", "csv"),
        ("application/json;q=0.5, text/csv", "csv"),
        ("text/csv;q=0.2, application/x-ndjson;q=0.9", "ndjson"),
        ("application/json;q=0, */*;q=0.1", "ndjson"),
        ("TEXT/CSV", "csv"),
    ],
)
def test_accept_is_negotiated_by_q_values(accept: str, fmt: str) -> None:
    assert choose_format(None, accept) == fmt


@pytest.mark.parametrize(
    "alias", ["application/x-ndjson", "application/ndjson", "application/jsonl"]
)
def test_ndjson_answers_to_its_aliases(alias: str) -> None:
    assert choose_format(None, alias) == "ndjson"


@pytest.mark.parametrize("accept", ["image/png", "text/html", "application/json;q=0"])
def test_accept_matching_nothing_is_not_acceptable(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        choose_format(None, accept)


# --- partial results -----------------------------------------------------------------------

LIST_ROWS = ndjson_text([1, "a"], [2, "b,c"])
OBJECT_ROWS = ndjson_text({"id": 1, "name": "a"}, {"id": 2, "extra": True})


def partial(lines: str, fmt: str, columns: list[str] | None = None) -> bytes:
    chunks, _ = format_partial_rows(lines, fmt, columns)
    return joined(chunks)


def test_partial_json_with_columns_is_a_columns_and_rows_document() -> None:
    body = partial(LIST_ROWS, "json", ["id", "name"])
    assert orjson.loads(body) == {"columns": ["id", "name"], "rows": [[1, "a"], [2, "b,c"]]}


def test_partial_json_without_columns_is_an_array_of_rows() -> None:
    assert orjson.loads(partial(LIST_ROWS, "json")) == [[1, "a"], [2, "b,c"]]


def test_partial_json_of_objects_is_an_array_even_with_columns() -> None:
    body = partial(OBJECT_ROWS, "json", ["id", "name"])
    assert orjson.loads(body) == [{"id": 1, "name": "a"}, {"id": 2, "extra": True}]


def test_partial_ndjson_with_columns_keys_list_rows() -> None:
    body = partial(LIST_ROWS, "ndjson", ["id", "name"])
    assert ndjson_values(body) == [{"id": 1, "name": "a"}, {"id": 2, "name": "b,c"}]


def test_partial_ndjson_without_columns_is_the_rows_as_published() -> None:
    assert partial(LIST_ROWS, "ndjson").decode() == '[1,"a"]\n[2,"b,c"]\n'
    assert partial(OBJECT_ROWS, "ndjson").decode() == (
        '{"id":1,"name":"a"}\n{"id":2,"extra":true}\n'
    )


def test_partial_csv_with_columns_has_them_as_header() -> None:
    body = partial(LIST_ROWS, "csv", ["id", "name"])
    assert csv_records(body) == [["id", "name"], ["1", "a"], ["2", "b,c"]]


def test_partial_csv_of_objects_has_their_keys_as_header() -> None:
    body = partial(OBJECT_ROWS, "csv")
    assert csv_records(body) == [["id", "name", "extra"], ["1", "a", ""], ["2", "", "true"]]


def test_partial_csv_of_list_rows_without_columns_has_no_header() -> None:
    assert csv_records(partial(LIST_ROWS, "csv")) == [["1", "a"], ["2", "b,c"]]


@pytest.mark.parametrize(
    ("fmt", "columns", "expected"),
    [
        ("json", ["id"], b'{"columns":["id"],"rows":[]}'),
        ("json", None, b"[]"),
        ("ndjson", ["id"], b""),
        ("ndjson", None, b""),
        ("csv", ["id"], b"id\r\n"),
        ("csv", None, b""),
    ],
)
def test_partial_empty_input_is_an_empty_table(
    fmt: str, columns: list[str] | None, expected: bytes
) -> None:
    assert partial("", fmt, columns) == expected


def test_partial_input_is_split_on_newlines_only() -> None:
    row = ["line\u2028separator", "para\u2029graph"]
    assert orjson.loads(partial(ndjson_text(row), "json")) == [row]


def test_partial_blank_lines_are_skipped() -> None:
    assert orjson.loads(partial("\n[[1]]\r\n\n[[2], [3]]\n\n", "json")) == [[1], [2], [3]]


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_partial_nested_rows_are_not_acceptable_as_csv_or_ndjson(fmt: str) -> None:
    with pytest.raises(NotAcceptable, match="not tabular"):
        format_partial_rows(ndjson_text({"a": {"b": 1}}), fmt, None)


def test_partial_list_row_of_the_wrong_width_is_not_acceptable() -> None:
    with pytest.raises(NotAcceptable):
        format_partial_rows(ndjson_text([1, 2, 3]), "csv", ["a", "b"])


# --- a job type's tabular flag -------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_a_type_not_declared_tabular_is_refused_as_a_table_without_reading_the_result(
    fmt: str,
) -> None:
    unreadable = "{not json at all"

    with pytest.raises(NotAcceptable, match="not tables") as raised:
        format_result(unreadable, fmt, type_tabular=False)

    assert raised.value.extra["formats"] == ["json"]


def test_a_type_not_declared_tabular_still_gives_its_result_as_json() -> None:
    chunks, content_type = format_result('[{"a": 1}]', "json", type_tabular=False)

    assert joined(chunks) == b'[{"a": 1}]'
    assert content_type == "application/json"
