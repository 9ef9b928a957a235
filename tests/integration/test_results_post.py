"""POST /v1/jobs/results: the multi-results document, with the ids in a body."""

from __future__ import annotations

import uuid

import pytest
import requests
from flask.testing import FlaskClient

from tests.support.api import submit
from tests.support.harness import LiveServer

pytestmark = pytest.mark.integration


def long_ids(count: int) -> list[str]:
    return [f"{n:03d}-{uuid.uuid4().hex}{uuid.uuid4().hex}"[:64] for n in range(count)]


def test_post_answers_the_same_document_as_get(api: FlaskClient) -> None:
    done = submit(api, params={"n": 2}, wait=10).get_json()["id"]
    failed = submit(api, params={"n": 2, "fail_at": 1}, wait=10).get_json()["id"]
    ids = [done, failed, "nobody", "bad{id"]

    posted = api.post("/v1/jobs/results", json={"ids": ids})
    got = api.get("/v1/jobs/results?ids=" + ",".join(ids).replace("{", "%7B"))

    assert posted.status_code == 200
    assert posted.get_json() == got.get_json()
    assert posted.get_json()[done]["status"] == "DONE"
    assert posted.get_json()["bad{id"] == {"status": "NOT_FOUND"}


def test_100_ids_of_64_characters_fit_through_gunicorn(live_server: LiveServer) -> None:
    done = requests.post(
        f"{live_server.url}/v1/jobs",
        json={"type": "demo.count", "params": {"n": 1}, "wait": 10},
        timeout=30,
    ).json()["id"]
    ids = [*long_ids(99), done]
    assert all(len(i) == 64 for i in ids[:99])

    response = requests.post(f"{live_server.url}/v1/jobs/results", json={"ids": ids}, timeout=30)

    assert response.status_code == 200
    answers = response.json()
    assert len(answers) == 100
    assert answers[done]["status"] == "DONE"
    assert {answers[i]["status"] for i in ids[:99]} == {"NOT_FOUND"}


BAD_BODIES = {
    "101 ids": {"ids": [f"j{n}" for n in range(101)]},
    "id over 64": {"ids": ["x" * 65]},
    "empty id": {"ids": [""]},
    "not strings": {"ids": [1, 2]},
    "no ids": {"jobs": ["a"]},
    "ids not a list": {"ids": "a,b"},
    "not an object": ["a", "b"],
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_a_bad_body_is_a_422_problem(api: FlaskClient, name: str) -> None:
    response = api.post("/v1/jobs/results", json=BAD_BODIES[name])

    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "VALIDATION_ERROR"


def test_malformed_json_is_400_and_not_json_is_415(api: FlaskClient) -> None:
    malformed = api.post(
        "/v1/jobs/results", data=b'{"ids": [', headers={"Content-Type": "application/json"}
    )
    plain = api.post("/v1/jobs/results", data=b"ids=a", headers={"Content-Type": "text/plain"})

    assert (malformed.status_code, malformed.mimetype) == (400, "application/problem+json")
    assert (plain.status_code, plain.mimetype) == (415, "application/problem+json")


def test_the_post_is_in_the_openapi_document(api: FlaskClient) -> None:
    spec = api.get("/openapi.json").get_json()

    post = spec["paths"]["/v1/jobs/results"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ResultsRequest"}
    request_schema = spec["components"]["schemas"]["ResultsRequest"]
    assert request_schema["properties"]["ids"]["maxItems"] == 100
    assert request_schema["properties"]["ids"]["items"]["maxLength"] == 64
    assert {"200", "400", "413", "415", "422"} <= set(post["responses"])
