"""Runs last: after everything above, Redis holds no key that never expires."""

from __future__ import annotations

import uuid

import pytest
import redis
from flask.testing import FlaskClient

from app import create_app
from tests.support.api import submit
from tests.support.harness import Process, wait_until
from workers.config import Settings
from workers.keys import PREFIX, JobKeys, tenant_index, tenant_listed

pytestmark = pytest.mark.integration


def keys_without_ttl(client: redis.Redis) -> list[str]:
    return [k for k in client.scan_iter(match=f"{PREFIX}*") if client.ttl(k) == -1]


def test_no_jobgate_key_lives_forever(api: FlaskClient, redis_client: redis.Redis) -> None:
    assert list(redis_client.scan_iter(match=f"{PREFIX}*")), "the suite left job keys to check"

    assert keys_without_ttl(redis_client) == []


def test_expired_jobs_leave_no_key_behind(
    api: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    ids = [submit(api, params={"n": 1}, retention=1, wait=10).get_json()["id"] for _ in range(5)]
    failed = submit(api, params={"n": 2, "fail_at": 1}, retention=1, wait=10).get_json()["id"]
    timed_out = submit(api, params={"n": 1, "delay": 3}, poll_timeout=1, retention=1).get_json()[
        "id"
    ]

    def remaining() -> list[str]:
        found = []
        for job_id in [*ids, failed, timed_out]:
            found += list(redis_client.scan_iter(match=f"*{job_id}*"))
        return found

    wait_until(lambda: remaining() == [], 1 + settings.tombstone_ttl + 5, "every key to expire")


def test_an_idle_tenants_listing_expires_with_its_last_job(
    settings: Settings, worker: Process, redis_client: redis.Redis
) -> None:
    tenant, key = f"idle{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    client = create_app(settings.with_overrides(api_keys={key: tenant})).test_client()
    auth = {"Authorization": f"Bearer {key}"}
    body = {"type": "demo.count", "params": {"n": 1}, "wait": 10, "retention": 1}
    for _ in range(3):
        assert client.post("/v1/jobs", json=body, headers=auth).status_code == 201

    def tenant_keys() -> list[str]:
        return list(redis_client.scan_iter(match=f"{PREFIX}*{tenant}*"))

    assert tenant_keys()
    wait_until(lambda: tenant_keys() == [], 1 + settings.tombstone_ttl + 5, "no key of the tenant")


def test_a_busy_tenants_listing_drops_expired_jobs(
    api: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    expired = [
        submit(api, params={"n": 1}, retention=1, wait=10).get_json()["id"] for _ in range(3)
    ]
    gone_key = JobKeys("default", expired[-1]).tombstone  # the last to go
    wait_until(lambda: not redis_client.exists(gone_key), 1 + settings.tombstone_ttl + 5, "expiry")

    submit(api, params={"n": 1})  # the tenant's next submit sweeps its listing

    for job_id in expired:
        assert redis_client.zscore(tenant_index("default"), job_id) is None
        assert redis_client.zscore(tenant_listed("default"), job_id) is None


def test_a_finished_jobs_record_stays_in_the_compact_hash_encoding(
    api: FlaskClient, redis_client: redis.Redis
) -> None:
    # Every value of the record is at most 64 bytes (small params, the runs
    # as short fields): Redis keeps it as a listpack, ~3x smaller than a table.
    doc = submit(api, params={"n": 2}, retention=5, wait=10).get_json()
    assert doc["status"] == "DONE"

    encoding = redis_client.object("encoding", JobKeys("default", doc["id"]).record)

    assert encoding in ("listpack", "ziplist")  # the name before Redis 7
