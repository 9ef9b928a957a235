"""files.search and sql.query on real files, a real SQLite file and the real
PostgreSQL (127.0.0.1:5432, database ``test``; CI has the same), with a real
redis-server and a real Celery worker; and results kept in chunks.

PostgreSQL not answering is a failure here, not a skip.
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from tests.support.api import poll_until, submit, terminal
from tests.support.harness import LiveServer, Process, start_worker, wait_until
from workers.config import MIB, Settings, parse_sql_sources
from workers.store import JobStore

pytestmark = pytest.mark.integration

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
NEEDLE = "needle"


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """A writable connection of the test's own, and a schema of its own (dropped after)."""
    conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=10)
    schema = f"jg_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"CREATE TABLE {schema}.items (id int PRIMARY KEY, name text, price numeric)")
    conn.execute(
        f"INSERT INTO {schema}.items VALUES (1, 'apple', 1.50), (2, 'pear', 2.25), (3, 'fig', NULL)"
    )
    yield conn, schema
    conn.execute(f"DROP SCHEMA {schema} CASCADE")
    conn.close()


@pytest.fixture(scope="module")
def files_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("files-root")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text(f"a {NEEDLE} outside the root\n")
    (root / "a.txt").write_text(f"first line\nthe {NEEDLE} here\nNEEDLE in caps\nlast\n")
    (root / "sub").mkdir()
    (root / "sub" / "b.md").write_text(f"{NEEDLE}\nno\nx {NEEDLE} y {NEEDLE}\n")
    (root / "sub" / "data.bin").write_bytes(b"\x00\x01" + NEEDLE.encode() + b"\n")
    (root / "link.txt").symlink_to(outside / "secret.txt")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    (root / "evil").mkdir()
    # A line RE2 answers at once and a backtracking engine never would.
    (root / "evil" / "long.txt").write_text("a" * 100_000 + "b\n" + "aaa\n")
    # Big enough that a search takes seconds: what a cancel interrupts.
    (root / "big").mkdir()
    with (root / "big" / "corpus.txt").open("w") as handle:
        for i in range(1_500_000):
            handle.write(f"line {i} {NEEDLE if i % 1000 == 0 else 'hay'} and some text\n")
    return root


@pytest.fixture(scope="module")
def sqlite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "x.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
    conn.executemany(
        "INSERT INTO items VALUES (?, ?, ?)",
        [(1, "apple", 1.5), (2, "pear", 2.25), (3, "fig", None)],
    )
    conn.commit()
    conn.close()
    return path


def jobtypes_settings(
    settings: Settings, files_root: Path, sqlite_path: Path, **overrides: Any
) -> Settings:
    sources = parse_sql_sources(f"pg={PG_URL},lite=sqlite:///{sqlite_path}")
    values: dict[str, Any] = {
        "queue": "jobgate-jobtypes",
        "files_root": str(files_root),
        "sql_sources": sources,
        "max_result_bytes": 64 * MIB,
    }
    values.update(overrides)
    return settings.with_overrides(**values)


@pytest.fixture(scope="module")
def jt_settings(settings: Settings, files_root: Path, sqlite_path: Path, pg: Any) -> Settings:
    return jobtypes_settings(settings, files_root, sqlite_path)


@pytest.fixture(scope="module")
def jt_worker(jt_settings: Settings, store: JobStore, log_dir: Path) -> Iterator[Process]:
    process = start_worker(jt_settings, store, log_dir, "jobgate-jobtypes")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def jt_app(jt_settings: Settings) -> Flask:
    return create_app(jt_settings)


@pytest.fixture
def jt(jt_app: Flask, jt_worker: Process) -> FlaskClient:
    return jt_app.test_client()


def run(client: FlaskClient, job_type: str, params: dict[str, Any], **body: Any) -> dict[str, Any]:
    response = submit(client, job_type, params=params, **body)
    assert response.status_code in (201, 202), response.data
    return poll_until(client, response.headers["Location"], terminal, timeout=120)[-1]


def result(client: FlaskClient, doc: dict[str, Any], fmt: str = "json") -> Any:
    response = client.get(f"{doc['links']['result']}?format={fmt}")
    assert response.status_code == 200, response.data
    return response.get_json() if fmt == "json" else response.data


def pg_active(location: str) -> list[int]:
    """Backends running a statement of the job at ``location`` (sql.query
    names each connection ``jobgate:<job id>``)."""
    job_id = location.rsplit("/", 1)[1]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND application_name = %s",
            [f"jobgate:{job_id}"],
        ).fetchall()
    return [row[0] for row in rows]


# -- offered only when configured ----------------------------------------------------


def test_types_are_absent_without_their_settings(client: FlaskClient) -> None:
    names = [t["name"] for t in client.get("/v1/job-types").get_json()["job_types"]]
    assert "files.search" not in names and "sql.query" not in names

    for job_type in ("files.search", "sql.query"):
        refused = submit(client, job_type, params={"pattern": "x", "source": "pg", "sql": "x"})
        assert refused.status_code == 422
        assert "Not a registered job type" in refused.get_json()["errors"]["type"][0]


def test_types_are_offered_with_source_names_only(jt: FlaskClient) -> None:
    response = jt.get("/v1/job-types")
    types = {t["name"]: t for t in response.get_json()["job_types"]}

    assert {"files.search", "sql.query"} <= set(types)
    source = types["sql.query"]["params_schema"]["properties"]["source"]
    assert source["enum"] == ["pg", "lite"]
    spec = jt.get("/openapi.json").data
    for text in (response.data, spec):
        assert b"postgresql://" not in text and b"sqlite://" not in text


def test_settings_repr_hides_source_passwords() -> None:
    sources = parse_sql_sources("pg=postgresql://u:s3cret@db/x")
    assert "s3cret" not in repr(Settings(sql_sources=sources))
    assert "s3cret" in str(sources)  # (what a child process's environment gets)


# -- files.search ---------------------------------------------------------------------


def test_literal_search_finds_exact_matches(jt: FlaskClient) -> None:
    doc = run(jt, "files.search", {"pattern": NEEDLE, "glob": "*.txt"})
    assert doc["status"] == "DONE", doc
    # link.txt resolves outside the root: skipped; NEEDLE in caps: case-sensitive.
    assert doc["result"] == {
        "columns": ["path", "line", "text"],
        "rows": [["a.txt", 2, f"the {NEEDLE} here"]],
    }
    assert "truncated" not in doc


def test_search_skips_binary_files_and_what_is_outside_the_root(jt: FlaskClient) -> None:
    doc = run(jt, "files.search", {"pattern": NEEDLE, "glob": "**/*", "case_sensitive": False})
    rows = [row for row in result(jt, doc)["rows"] if not row[0].startswith("big/")]
    assert rows == [
        ["a.txt", 2, f"the {NEEDLE} here"],
        ["a.txt", 3, "NEEDLE in caps"],
        ["sub/b.md", 1, NEEDLE],
        ["sub/b.md", 3, f"x {NEEDLE} y {NEEDLE}"],
    ]


def test_regex_search_and_max_matches(jt: FlaskClient) -> None:
    doc = run(jt, "files.search", {"pattern": r"^x \w+ y", "regex": True, "glob": "sub/*"})
    assert doc["result"]["rows"] == [["sub/b.md", 3, f"x {NEEDLE} y {NEEDLE}"]]

    cut = run(jt, "files.search", {"pattern": NEEDLE, "glob": "sub/**", "max_matches": 1})
    assert cut["result"]["rows"] == [["sub/b.md", 1, NEEDLE]]
    assert cut["truncated"] is True


def test_catastrophic_regex_is_bounded(jt: FlaskClient) -> None:
    started = time.monotonic()
    doc = run(jt, "files.search", {"pattern": "(a+)+$", "regex": True, "glob": "evil/*"})

    assert doc["status"] == "DONE", doc
    assert doc["result"]["rows"] == [["evil/long.txt", 2, "aaa"]]
    # A backtracking engine would need ~2^100000 steps on line 1; RE2 is linear.
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("glob", ["../*", "/etc/*", "sub/../../x", "~/x"])
def test_globs_leading_outside_the_root_are_refused(jt: FlaskClient, glob: str) -> None:
    refused = submit(jt, "files.search", params={"pattern": "x", "glob": glob})
    assert refused.status_code == 422
    assert "glob" in refused.get_json()["errors"]["params"]


def test_invalid_regex_is_a_field_error(jt: FlaskClient) -> None:
    refused = submit(jt, "files.search", params={"pattern": "(", "regex": True})
    assert refused.status_code == 422
    assert "pattern" in refused.get_json()["errors"]["params"]


def test_search_publishes_rows_then_stops_at_a_cancel(jt: FlaskClient, jt_worker: Process) -> None:
    location = submit(jt, "files.search", params={"pattern": NEEDLE, "glob": "big/*"}).headers[
        "Location"
    ]
    job_id = location.rsplit("/", 1)[1]

    def partial() -> list[Any]:
        response = jt.get(f"{location}/result?partial=true")
        body = response.get_json() if response.status_code == 200 else []
        return list(body["rows"] if isinstance(body, dict) else body)

    rows = wait_until(partial, 60, "matches published while the search runs")
    assert rows[0] == ["big/corpus.txt", 1, f"line 0 {NEEDLE} and some text"]
    assert all(row[2] == f"line {row[1] - 1} {NEEDLE} and some text" for row in rows)
    running = jt.get(location).get_json()
    assert running["status"] == "RUNNING" and "bytes" in running["message"]

    cancelled = time.monotonic()
    assert jt.delete(location).status_code == 200
    wait_until(
        lambda: f"job {job_id} ended: stopped:FAILED" in jt_worker.output(),
        10,
        "the search to stop",
    )
    stopped_after = time.monotonic() - cancelled
    print(f"files.search stopped {stopped_after:.2f} s after the DELETE")


# -- sql.query: SQLite ------------------------------------------------------------------


def test_sqlite_rows_with_columns_and_bound_params(jt: FlaskClient) -> None:
    doc = run(
        jt,
        "sql.query",
        {"source": "lite", "sql": "SELECT id, name, price FROM items WHERE id >= ?", "params": [2]},
    )
    assert doc["status"] == "DONE", doc
    assert doc["result"] == {
        "columns": [
            {"name": "id", "type": "integer"},
            {"name": "name", "type": "text"},
            {"name": "price", "type": "real"},
        ],
        "rows": [[2, "pear", 2.25], [3, "fig", None]],
    }
    assert result(jt, doc, "csv") == b"id,name,price\r\n2,pear,2.25\r\n3,fig,\r\n"


def test_sqlite_write_is_refused_by_the_database(jt: FlaskClient, sqlite_path: Path) -> None:
    doc = run(jt, "sql.query", {"source": "lite", "sql": "DELETE FROM items"})

    assert doc["status"] == "FAILED"
    assert doc["error"]["code"] == "JOB_ERROR"
    assert doc["error"]["message"] == "attempt to write a readonly database"
    assert doc["error"]["details"]["sqlstate"] == "SQLITE_READONLY"
    assert sqlite3.connect(sqlite_path).execute("SELECT count(*) FROM items").fetchone() == (3,)


def test_sqlite_cancel_interrupts_the_statement(jt: FlaskClient, jt_worker: Process) -> None:
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    )
    location = submit(jt, "sql.query", params={"source": "lite", "sql": endless}).headers[
        "Location"
    ]
    job_id = location.rsplit("/", 1)[1]
    wait_until(lambda: jt.get(location).get_json()["status"] == "RUNNING", 30, "the job to run")

    assert jt.delete(location).status_code == 200
    wait_until(
        lambda: f"job {job_id} ended: stopped:FAILED" in jt_worker.output(),
        10,
        "SQLite's statement to be interrupted",
    )


# -- sql.query: PostgreSQL ---------------------------------------------------------------


def test_pg_rows_columns_and_params(jt: FlaskClient, pg: Any) -> None:
    _conn, schema = pg
    doc = run(
        jt,
        "sql.query",
        {
            "source": "pg",
            "sql": f"SELECT id, name, price FROM {schema}.items WHERE id <= %s ORDER BY id",
            "params": [3],
        },
    )
    assert doc["status"] == "DONE", doc
    assert doc["result"] == {
        "columns": [
            {"name": "id", "type": "int4"},
            {"name": "name", "type": "text"},
            {"name": "price", "type": "numeric"},
        ],
        "rows": [[1, "apple", "1.50"], [2, "pear", "2.25"], [3, "fig", None]],
    }
    lines = result(jt, doc, "ndjson").splitlines()
    assert [orjson.loads(line) for line in lines] == [
        {"id": 1, "name": "apple", "price": "1.50"},
        {"id": 2, "name": "pear", "price": "2.25"},
        {"id": 3, "name": "fig", "price": None},
    ]


def test_pg_literal_percent_and_named_params(jt: FlaskClient, pg: Any) -> None:
    _conn, schema = pg
    doc = run(
        jt,
        "sql.query",
        {"source": "pg", "sql": f"SELECT name FROM {schema}.items WHERE name LIKE 'p%' ORDER BY 1"},
    )
    assert doc["result"]["rows"] == [["pear"]]
    named = run(
        jt,
        "sql.query",
        {
            "source": "pg",
            "sql": f"SELECT name FROM {schema}.items WHERE id = %(id)s",
            "params": {"id": 3},
        },
    )
    assert named["result"]["rows"] == [["fig"]]


def test_pg_max_rows_truncates(jt: FlaskClient) -> None:
    doc = run(
        jt,
        "sql.query",
        {"source": "pg", "sql": "SELECT i FROM generate_series(1, 10) i", "max_rows": 3},
    )
    assert doc["result"]["rows"] == [[1], [2], [3]]
    assert doc["truncated"] is True
    exact = run(jt, "sql.query", {"source": "pg", "sql": "SELECT 1 AS one", "max_rows": 1})
    assert "truncated" not in exact


def test_pg_write_is_refused_by_the_database(jt: FlaskClient, pg: Any) -> None:
    conn, schema = pg
    for sql in (
        f"INSERT INTO {schema}.items VALUES (9, 'x', 1)",
        f"WITH d AS (DELETE FROM {schema}.items RETURNING id) SELECT * FROM d",
        f"SELECT 1; DELETE FROM {schema}.items",
    ):
        doc = run(jt, "sql.query", {"source": "pg", "sql": sql})
        assert doc["status"] == "FAILED", sql
        assert doc["error"]["code"] == "JOB_ERROR"
    insert = run(jt, "sql.query", {"source": "pg", "sql": f"INSERT INTO {schema}.items VALUES (9)"})
    assert insert["error"]["message"] == "cannot execute INSERT in a read-only transaction"
    assert insert["error"]["details"]["sqlstate"] == "25006"
    assert conn.execute(f"SELECT count(*) FROM {schema}.items").fetchone() == (3,)


def test_pg_error_details_carry_sqlstate_message_and_position(jt: FlaskClient) -> None:
    doc = run(jt, "sql.query", {"source": "pg", "sql": "SELECT 1 FROM no_such_table"})

    assert doc["status"] == "FAILED"
    details = doc["error"]["details"]
    assert details["sqlstate"] == "42P01"
    assert details["message"] == 'relation "no_such_table" does not exist'
    assert details["position"] == len("SELECT 1 FROM ") + 1
    syntax = run(jt, "sql.query", {"source": "pg", "sql": "SELECT * FROM WHERE x"})
    assert syntax["error"]["details"]["sqlstate"] == "42601"
    assert syntax["error"]["details"]["position"] == len("SELECT * FROM ") + 1


def test_unknown_source_is_a_422_field_error(jt: FlaskClient) -> None:
    refused = submit(jt, "sql.query", params={"source": "nope", "sql": "SELECT 1"})

    assert refused.status_code == 422
    assert "Unknown source" in refused.get_json()["errors"]["params"]["source"][0]
    assert b"postgresql://" not in refused.data


def test_pg_partial_rows_then_delete_cancels_the_query(jt: FlaskClient) -> None:
    sql = (
        "SELECT i FROM generate_series(1, 100000) i, "
        "LATERAL (SELECT pg_sleep(CASE WHEN i > 2000 THEN 60 ELSE 0 END)) s"
    )
    location = submit(jt, "sql.query", params={"source": "pg", "sql": sql}).headers["Location"]

    def partial() -> list[Any]:
        response = jt.get(f"{location}/result?partial=true")
        body = response.get_json() if response.status_code == 200 else []
        rows = body["rows"] if isinstance(body, dict) else body  # (a list: no columns yet)
        return rows if len(rows) >= 2000 else []

    rows = wait_until(partial, 60, "the first 2,000 rows to be published")
    assert rows == [[i] for i in range(1, 2001)]
    assert pg_active(location), "the query runs on the server"
    assert "2000 rows fetched" in jt.get(location).get_json()["message"]

    deleted = time.monotonic()
    assert jt.delete(location).status_code == 200
    wait_until(lambda: not pg_active(location), 2, "the query to be gone from pg_stat_activity")
    print(f"query gone {time.monotonic() - deleted:.2f} s after the DELETE")


def test_pg_heartbeat_timeout_cancels_the_query(jt: FlaskClient) -> None:
    response = submit(
        jt,
        "sql.query",
        params={"source": "pg", "sql": "SELECT pg_sleep(60)"},
        poll_timeout=1,
    )
    location = response.headers["Location"]
    # Polled (each poll renews the heartbeat) until the query runs; then nobody
    # polls, and the heartbeat lapses a second after the last poll.
    wait_until(lambda: jt.get(location) and pg_active(location), 30, "the query to run")
    wait_until(lambda: not pg_active(location), 1 + 5, "the timed-out query to be cancelled")
    doc = jt.get(location).get_json()
    assert doc["status"] == "FAILED" and doc["error"]["code"] == "TIMED_OUT"


def test_pg_time_limit_cancels_the_query(
    settings: Settings, files_root: Path, sqlite_path: Path, store: JobStore, log_dir: Path
) -> None:
    limited = jobtypes_settings(
        settings, files_root, sqlite_path, queue="jobgate-jobtypes-limit", max_runtime=2
    )
    worker = start_worker(limited, store, log_dir, "jobgate-jobtypes-limit")
    try:
        client = create_app(limited).test_client()
        response = submit(
            client, "sql.query", params={"source": "pg", "sql": "SELECT pg_sleep(60)"}
        )
        location = response.headers["Location"]
        wait_until(lambda: pg_active(location), 30, "the query to run")
        wait_until(
            lambda: not pg_active(location), 2 + 5, "the query past its limit to be cancelled"
        )
        doc = poll_until(client, location, terminal)[-1]
        assert doc["error"]["code"] == "TIME_LIMIT_EXCEEDED"
    finally:
        worker.stop()


# -- results in chunks -------------------------------------------------------------------


ROWS_200K = "SELECT i AS id, 'name-' || i AS name FROM generate_series(1, 200000) i"


def expected_csv(count: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["id", "name"])
    writer.writerows([i, f"name-{i}"] for i in range(1, count + 1))
    return out.getvalue().encode()


def job_keys_in_redis(client: redis.Redis, job_id: str) -> list[str]:
    return sorted(client.scan_iter(match=f"*{job_id}*"))


def test_200k_rows_stream_as_csv_json_and_ndjson(
    jt: FlaskClient,
    jt_settings: Settings,
    jt_worker: Process,
    log_dir: Path,
    redis_client: redis.Redis,
) -> None:
    doc = run(jt, "sql.query", {"source": "pg", "sql": ROWS_200K, "max_rows": 200_000})
    assert doc["status"] == "DONE", doc
    assert "result" not in doc and "truncated" not in doc
    job_id = doc["id"]
    chunk_keys = [k for k in job_keys_in_redis(redis_client, job_id) if ":result:" in k]
    assert len(chunk_keys) >= 3, "a result of several MiB is kept in chunks"
    assert all(redis_client.pttl(k) > 0 for k in chunk_keys)
    assert all(redis_client.strlen(k) <= 2 * MIB for k in chunk_keys)

    server = LiveServer(jt_settings, log_dir)
    try:
        url = f"{server.url}/v1/jobs/{job_id}/result"
        with requests.get(f"{url}?format=csv", stream=True, timeout=60) as response:
            assert response.status_code == 200
            assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
            assert "Content-Length" not in response.headers  # streamed
            body = b"".join(response.iter_content(64 * 1024))
        assert body == expected_csv(200_000)

        whole = requests.get(url, timeout=60)
        expected_rows = [[i, f"name-{i}"] for i in range(1, 200_001)]
        assert whole.content == orjson.dumps(
            {
                "columns": [{"name": "id", "type": "int4"}, {"name": "name", "type": "text"}],
                "rows": expected_rows,
            }
        )
        ndjson = requests.get(f"{url}?format=ndjson", timeout=60).content.splitlines()
        assert len(ndjson) == 200_000
        assert orjson.loads(ndjson[0]) == {"id": 1, "name": "name-1"}
        assert orjson.loads(ndjson[-1]) == {"id": 200_000, "name": "name-200000"}
    finally:
        server.stop()

    several = jt.get(f"/v1/jobs/results?ids={job_id}").get_json()[job_id]
    assert several == {"status": "DONE", "links": {"result": f"/v1/jobs/{job_id}/result"}}

    assert jt.delete(f"/v1/jobs/{job_id}").status_code == 204
    left = job_keys_in_redis(redis_client, job_id)
    assert left and all(k.endswith(":tomb") for k in left), left
    assert jt.get(f"/v1/jobs/{job_id}/result").status_code == 410


def test_chunked_result_expires_with_its_job(
    jt: FlaskClient, jt_settings: Settings, redis_client: redis.Redis
) -> None:
    doc = run(
        jt,
        "sql.query",
        {"source": "pg", "sql": ROWS_200K, "max_rows": 100_000},
        retention=1,
    )
    assert doc["status"] == "DONE" and doc["truncated"] is True
    assert any(":result:" in k for k in job_keys_in_redis(redis_client, doc["id"]))
    wait_until(
        lambda: job_keys_in_redis(redis_client, doc["id"]) == [],
        1 + jt_settings.tombstone_ttl + 10,
        "every key of the chunked result to expire",
    )


def test_large_returned_value_is_kept_in_chunks(jt: FlaskClient, redis_client: redis.Redis) -> None:
    """A job that returns (rather than publishes) a value over a chunk."""
    doc = run(jt, "test.big", {"size": 3 * MIB})
    assert doc["status"] == "DONE", doc
    assert any(":result:" in k for k in job_keys_in_redis(redis_client, doc["id"]))
    assert result(jt, doc) == "x" * (3 * MIB)
    response = jt.get(f"{doc['links']['result']}?format=csv")
    assert response.status_code == 406


def test_published_rows_over_the_limit_fail_and_leave_nothing(
    api: FlaskClient, settings: Settings, redis_client: redis.Redis
) -> None:
    """The session's worker allows 1 MiB: 40,000 rows of ~60 bytes pass it."""
    assert settings.max_result_bytes == MIB
    doc = run(api, "test.publish", {"rows": 40_000, "width": 50})

    assert doc["status"] == "FAILED"
    assert doc["error"]["code"] == "RESULT_TOO_LARGE"
    left = job_keys_in_redis(redis_client, doc["id"])
    assert all(":partial" not in k and ":result" not in k for k in left), left


def test_published_rows_over_a_chunk_become_the_result(
    jt: FlaskClient, redis_client: redis.Redis
) -> None:
    doc = run(jt, "test.publish", {"rows": 30_000, "width": 100})

    assert doc["status"] == "DONE", doc
    keys = job_keys_in_redis(redis_client, doc["id"])
    assert sum(":result:" in k for k in keys) >= 3
    assert not any(":partial" in k for k in keys)
    rows = [[i, "x" * 100] for i in range(30_000)]
    assert jt.get(doc["links"]["result"]).data == orjson.dumps(
        {"columns": ["i", "text"], "rows": rows}
    )
    small = run(jt, "test.publish", {"rows": 3})
    assert small["result"] == {"columns": ["i", "text"], "rows": [[i, "x" * 10] for i in range(3)]}
    assert not any(":result:" in k for k in job_keys_in_redis(redis_client, small["id"]))
