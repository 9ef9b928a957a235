"""The poll's and the submit's lean paths (issue 17) answer as the full ones do.

A poll without a query string and every submit skip flask-smorest's
decorators (app/jobs.py); a poll with a query string takes the decorated path,
with webargs' validation. The status document's links are built without
url_for (app/documents.py). Each is checked here against what the decorated
path, or url_for, gives for the same job.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient

from app.documents import links

pytestmark = pytest.mark.integration

QUICK = {"type": "demo.count", "params": {"n": 1}, "wait": 30}


def submit(client: FlaskClient, body: dict[str, Any]) -> str:
    response = client.post("/v1/jobs", json=body)
    assert response.status_code in (201, 202), response.get_data(as_text=True)
    job_id = str(doc(response)["id"])
    assert response.headers["Location"].endswith(f"/v1/jobs/{job_id}")
    return job_id


def doc(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.get_json()
    return body


def test_lean_poll_answers_as_the_decorated_path(api: FlaskClient) -> None:
    # A finished job does not change between the two reads: both answers
    # must be the same, byte for byte apart from the request id and date.
    job_id = submit(api, QUICK)
    lean = api.get(f"/v1/jobs/{job_id}")  # no query string: the lean path
    full = api.get(f"/v1/jobs/{job_id}?wait=0")  # the decorated path, webargs
    assert lean.status_code == full.status_code == 200
    assert doc(lean)["status"] == "DONE"
    assert lean.get_data() == full.get_data()
    skip = {"X-Request-ID", "Date"}
    assert [h for h in lean.headers if h[0] not in skip] == [
        h for h in full.headers if h[0] not in skip
    ]
    assert doc(lean)["links"] == {
        "self": f"/v1/jobs/{job_id}",
        "result": f"/v1/jobs/{job_id}/result",
    }


def test_lean_poll_of_a_live_job_advises_the_next_poll(client: FlaskClient) -> None:
    # Long enough to be live whether or not a worker runs it; cancelled after.
    long_job = {"type": "demo.count", "params": {"n": 100, "delay": 1}, "wait": 0}
    job_id = submit(client, {**long_job, "poll_timeout": 0})
    try:
        lean = client.get(f"/v1/jobs/{job_id}")
        assert lean.status_code == 202
        assert doc(lean)["status"] in ("INITIALIZED", "RUNNING")
        assert int(lean.headers["Retry-After"]) >= 1
    finally:
        client.delete(f"/v1/jobs/{job_id}")


def test_a_bad_query_still_gets_webargs_validation(client: FlaskClient) -> None:
    job_id = submit(client, {**QUICK, "wait": 0, "poll_timeout": 0})
    response = client.get(f"/v1/jobs/{job_id}?wait=nope")
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    assert "wait" in str(doc(response)["errors"])


def test_unknown_job_on_the_lean_path_is_404(client: FlaskClient) -> None:
    response = client.get("/v1/jobs/no-such-job")
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"


@pytest.mark.parametrize("script_root", ["", "/behind/a/proxy"])
def test_links_are_what_url_for_builds(app: Flask, script_root: str) -> None:
    job_id = "01KB0000000000000000000000.a_b-c"
    with app.test_request_context("/", base_url=f"http://example.test{script_root}"):
        own = url_for("jobs.Job", job_id=job_id)
        assert own.startswith(script_root + "/v1/jobs/")
        assert links(job_id) == {"self": own, "result": url_for("jobs.JobResult", job_id=job_id)}


def test_ensure_sync_is_remembered_per_function_not_per_bound_method(app: Flask) -> None:
    class View:
        def get(self) -> str:
            return "ok"

    first, second = View().get, View().get
    assert app.ensure_sync(first) is first
    assert app.ensure_sync(second) is second  # the bound method itself, not a stale one
    cache = app._plain  # type: ignore[attr-defined]
    assert View.get in cache
    assert first not in cache

    async def coroutine() -> str:
        return "ok"

    # Flask's own answer for a coroutine function (here: no async extra installed).
    with pytest.raises(RuntimeError, match="async"):
        app.ensure_sync(coroutine)
