"""Retry-After on 429 rounds up to the moment the rate window frees a slot."""

from __future__ import annotations

import pytest
from flask import Response

from app import ratelimit
from workers.config import Settings


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> float:
    moment = 1_000.7
    monkeypatch.setattr("app.ratelimit.time.time", lambda: moment)
    return moment


def limited(reset: str) -> Response:
    response = Response(
        status=429, headers={"X-RateLimit-Reset": reset, ratelimit.LIMITER_RETRY_AFTER: "0"}
    )
    return ratelimit.settle_retry_after(response)


@pytest.mark.parametrize(("reset", "advice"), [("1001", "1"), ("1003", "3"), ("1000", "1")])
def test_retry_after_is_rounded_up_and_never_zero(now: float, reset: str, advice: str) -> None:
    assert limited(reset).headers["Retry-After"] == advice


def test_the_limiters_own_header_never_leaves(now: float) -> None:
    assert ratelimit.LIMITER_RETRY_AFTER not in limited("1001").headers


def test_a_polls_own_advice_is_kept(now: float) -> None:
    response = Response(
        status=202,
        headers={
            "X-RateLimit-Reset": "1060",
            "Retry-After": "2",
            ratelimit.LIMITER_RETRY_AFTER: "59",
        },
    )

    answered = ratelimit.settle_retry_after(response)

    assert answered.headers["Retry-After"] == "2"
    assert ratelimit.LIMITER_RETRY_AFTER not in answered.headers


def test_a_200_gets_no_retry_after(now: float) -> None:
    response = Response(status=200, headers={"X-RateLimit-Reset": "1009"})

    assert "Retry-After" not in ratelimit.settle_retry_after(response).headers


def test_the_tenant_caps_429_keeps_its_advice(now: float) -> None:
    response = Response(status=429, headers={"Retry-After": "5", "X-RateLimit-Reset": "1001"})

    assert ratelimit.settle_retry_after(response).headers["Retry-After"] == "5"


def test_the_limiter_reaches_redis_the_way_the_store_does() -> None:
    storage_uri, storage_options = ratelimit.storage_uri, ratelimit.storage_options
    single = Settings.from_env({"JOBGATE_REDIS_URL": "redis://:pw@h:6390/2"})
    assert storage_uri(single) == "redis://:pw@h:6390/2"
    sentinel = single.with_overrides(
        redis_mode="sentinel", redis_sentinels=("a:1", "b:2"), redis_sentinel_master="main"
    )
    assert storage_uri(sentinel) == "redis+sentinel://:pw@a:1,b:2/main"
    assert storage_options(sentinel)["db"] == 2
    assert storage_options(sentinel)["use_replicas"] is False
    cluster = single.with_overrides(redis_mode="cluster", broker_url="redis://b:6379/0")
    assert storage_uri(cluster) == "redis+cluster://:pw@h:6390"
