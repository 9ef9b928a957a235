"""Result formats and partial results, with a real redis-server and worker."""

from __future__ import annotations

import csv
import io

import orjson
import pytest
import redis
from flask.testing import FlaskClient

from tests.support.api import poll_until, submit, terminal
from workers.keys import JobKeys

pytestmark = pytest.mark.integration


@pytest.fixture
def table_job(api: FlaskClient) -> str:
    response = submit(api, params={"n": 3}, wait=10)
    assert response.get_json()["status"] == "DONE"
    return str(response.headers["Location"])


def test_result_as_csv(api: FlaskClient, table_job: str) -> None:
    for response in (
        api.get(f"{table_job}/result?format=csv"),
        api.get(f"{table_job}/result", headers={"Accept": "text/csv"}),
    ):
        assert response.status_code == 200
        assert response.mimetype == "text/csv"
        assert response.data == b"step,square\r\n0,0\r\n1,1\r\n2,4\r\n"


def test_result_as_ndjson(api: FlaskClient, table_job: str) -> None:
    response = api.get(f"{table_job}/result?format=ndjson")

    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    lines = [orjson.loads(line) for line in response.data.splitlines()]
    assert lines == [{"step": i, "square": i * i} for i in range(3)]


def test_format_query_wins_over_accept(api: FlaskClient, table_job: str) -> None:
    response = api.get(f"{table_job}/result?format=json", headers={"Accept": "text/csv"})

    assert response.mimetype == "application/json"
    assert response.get_json()["rows"] == [[0, 0], [1, 1], [2, 4]]


def test_non_tabular_result_as_csv_is_406(api: FlaskClient) -> None:
    location = submit(api, "test.big", params={"size": 10}, wait=10).headers["Location"]

    refused = api.get(f"{location}/result?format=csv")
    assert refused.status_code == 406
    assert refused.mimetype == "application/problem+json"
    assert refused.get_json()["code"] == "NOT_ACCEPTABLE"
    assert api.get(f"{location}/result").get_json() == "x" * 10


def test_a_type_not_declared_tabular_gives_even_a_table_as_json_only(api: FlaskClient) -> None:
    location = submit(api, "test.rows", wait=10).headers["Location"]

    refused = api.get(f"{location}/result?format=csv")
    assert refused.status_code == 406
    assert refused.get_json()["formats"] == ["json"]
    assert api.get(f"{location}/result").get_json() == [{"a": 1}, {"a": 2}]


def test_unknown_format_is_rejected(api: FlaskClient, table_job: str) -> None:
    unknown = api.get(f"{table_job}/result?format=xml")
    assert unknown.status_code == 422
    assert "format" in unknown.get_json()["errors"]
    refused = api.get(f"{table_job}/result", headers={"Accept": "application/xml"})
    assert refused.status_code == 406
    assert refused.get_json()["formats"] == ["json", "ndjson", "csv"]


def test_large_table_is_streamed_as_csv(api: FlaskClient) -> None:
    location = submit(api, params={"n": 40_000}, wait=30).headers["Location"]
    poll_until(api, location, terminal, timeout=60)

    response = api.get(f"{location}/result?format=csv")

    assert response.is_streamed
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["step", "square"]
    assert len(rows) == 40_001
    assert rows[-1] == ["39999", str(39999 * 39999)]


def test_partial_result_while_running(api: FlaskClient, redis_client: redis.Redis) -> None:
    response = submit(api, params={"n": 100, "delay": 0.05})
    location, job_id = response.headers["Location"], response.get_json()["id"]
    poll_until(api, location, lambda d: d["status"] == "RUNNING" and d["progress"] >= 20)

    partial = api.get(f"{location}/result?partial=true")
    as_csv = api.get(f"{location}/result?partial=true&format=csv")
    as_ndjson = api.get(f"{location}/result?partial=true&format=ndjson")

    assert partial.status_code == 200
    assert partial.headers["Jobgate-Partial"] == "true"
    body = partial.get_json()
    assert body["columns"] == ["step", "square"]
    so_far = len(body["rows"])
    assert 10 <= so_far < 100
    assert body["rows"] == [[i, i * i] for i in range(so_far)]
    assert as_csv.data.startswith(b"step,square\r\n0,0\r\n")
    assert orjson.loads(as_ndjson.data.splitlines()[0]) == {"step": 0, "square": 0}
    keys = JobKeys("default", job_id)
    # Both TTLs in one MULTI: two separate reads would straddle a millisecond.
    pipe = redis_client.pipeline()
    pipe.pttl(keys.partial)
    pipe.pttl(keys.record)
    partial_ttl, record_ttl = pipe.execute()
    assert 0 < partial_ttl <= record_ttl

    done = poll_until(api, location, terminal)[-1]
    final = api.get(f"{location}/result?partial=true")
    assert done["status"] == "DONE"
    assert "Jobgate-Partial" not in final.headers
    assert len(final.get_json()["rows"]) == 100
    assert not redis_client.exists(keys.partial), "partial rows go when the result lands"


def test_result_without_partial_is_204_while_running(api: FlaskClient) -> None:
    location = submit(api, params={"n": 30, "delay": 0.1}).headers["Location"]
    poll_until(api, location, lambda d: d["status"] == "RUNNING")

    response = api.get(f"{location}/result")

    assert response.status_code == 204
    assert "Jobgate-Partial" not in response.headers
    poll_until(api, location, terminal)
