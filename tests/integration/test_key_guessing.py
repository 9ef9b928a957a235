"""Guessed keys spend the client address's budget, never one of their own;
X-Forwarded-* count only behind proxies the operator says to trust."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
import redis

from app import create_app
from workers import keys as keyspace
from workers.config import Settings

pytestmark = pytest.mark.integration

GUESSES = 500
BUDGET = 20


def limiter_keys(client: redis.Redis) -> set[str]:
    return set(client.scan_iter(match=f"{keyspace.RATE_LIMIT_PREFIX}*"))


def test_500_wrong_keys_are_refused_429_after_one_budget_and_create_one_counter(
    settings: Settings, redis_client: redis.Redis
) -> None:
    key = "key-" + uuid.uuid4().hex
    app = create_app(
        settings.with_overrides(api_keys={key: "guessed"}, rate_limit=f"{BUDGET}/minute")
    )
    client = app.test_client()
    attacker = {"REMOTE_ADDR": "198.51.100.7"}
    before = limiter_keys(redis_client)

    codes = Counter(
        client.get(
            "/v1/job-types",
            headers={"Authorization": f"Bearer guess-{n}-{uuid.uuid4().hex}"},
            environ_base=attacker,
        ).status_code
        for n in range(GUESSES)
    )

    assert codes == {401: BUDGET, 429: GUESSES - BUDGET}
    created = limiter_keys(redis_client) - before
    assert len(created) == 1, created  # the address's window, not one per guess
    assert "addr:198.51.100.7" in next(iter(created))
    # The key's owner, from the same address, has a budget of its own.
    valid = client.get(
        "/v1/job-types", headers={"Authorization": f"Bearer {key}"}, environ_base=attacker
    )
    assert valid.status_code == 200
    assert valid.headers["X-RateLimit-Remaining"] == str(BUDGET - 1)


def test_a_request_without_a_key_spends_the_address_budget_too(settings: Settings) -> None:
    key = "key-" + uuid.uuid4().hex
    app = create_app(settings.with_overrides(api_keys={key: "nokey"}, rate_limit="3/minute"))
    client = app.test_client()
    address = {"REMOTE_ADDR": "198.51.100.8"}

    codes = [client.get("/v1/jobs", environ_base=address).status_code for _ in range(4)]

    assert codes == [401, 401, 401, 429]


@pytest.mark.parametrize(("trusted", "expected"), [(0, [401, 401, 429]), (1, [401, 401, 401])])
def test_forwarded_addresses_count_only_behind_trusted_proxies(
    settings: Settings, trusted: int, expected: list[int]
) -> None:
    app = create_app(
        settings.with_overrides(
            api_keys={uuid.uuid4().hex: "proxied"},
            rate_limit="2/minute",
            trusted_proxies=trusted,
        )
    )
    client = app.test_client()
    proxy = {"REMOTE_ADDR": f"192.0.2.{10 + trusted}"}

    codes = [
        # Two requests from one client, then one from another, all via the proxy.
        client.get(
            "/v1/jobs", headers={"X-Forwarded-For": forwarded}, environ_base=proxy
        ).status_code
        for forwarded in ("203.0.113.1", "203.0.113.1", f"203.0.113.{2 + trusted}")
    ]

    # Untrusted: the header is ignored and all three spend the proxy's budget.
    assert codes == expected


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [(0, "http://localhost/v1/jobs/"), (1, "https://api.example.com/v1/jobs/")],
)
def test_location_uses_forwarded_scheme_and_host_only_behind_trusted_proxies(
    settings: Settings, trusted: int, expected: str
) -> None:
    app = create_app(settings.with_overrides(trusted_proxies=trusted))
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.com"}

    response = app.test_client().post(
        "/v1/jobs",
        json={"type": "demo.count", "params": {"n": 1}, "wait": 0},
        headers=forwarded,
    )

    assert response.status_code == 202
    job_id = response.get_json()["id"]
    assert response.headers["Location"] == expected + job_id
    assert response.get_json()["links"]["self"] == f"/v1/jobs/{job_id}"
