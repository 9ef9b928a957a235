"""Small helpers to drive the API the way a client does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse


def submit(client: FlaskClient, job_type: str = "demo.count", **body: Any) -> TestResponse:
    body.setdefault("wait", 0)
    return client.post("/v1/jobs", json={"type": job_type, **body})


def poll_until(
    client: FlaskClient,
    location: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 30,
) -> list[dict[str, Any]]:
    """Long-poll ``location`` until ``done(doc)``; returns every document seen."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"{location}?wait=2")
        assert response.status_code in (200, 202), response.data
        seen.append(response.get_json())
        if done(seen[-1]):
            return seen
    raise AssertionError(f"{location} not done within {timeout} s; last: {seen[-1:]}")


def terminal(doc: dict[str, Any]) -> bool:
    return doc["status"] in ("DONE", "FAILED")
