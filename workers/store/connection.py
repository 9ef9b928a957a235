"""The Redis clients of the store, and Redis errors as Jobgate's error."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

import redis
from redis.connection import parse_url
from redis.exceptions import ClusterDownError, RedisClusterException, TryAgainError
from redis.sentinel import Sentinel

from workers import limits
from workers.config import Settings
from workers.errors import BackendUnavailable

# Connections beyond one per request thread: watchdogs, heartbeats, pipelines.
POOL_SPARE_CONNECTIONS = 16
# redis-py checks an idle connection before reuse after this many seconds.
HEALTH_CHECK_INTERVAL_S = 30

# What "Redis is unavailable" looks like, from one server or a Cluster (a
# node down, a slot not served, a cluster that no node answers for).
UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ClusterDownError,
    TryAgainError,
    RedisClusterException,
)

P = ParamSpec("P")
R = TypeVar("R")


def backend_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Redis unreachable or too slow → ``BackendUnavailable`` (503)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except UNAVAILABLE as exc:
            raise BackendUnavailable(f"Redis is unavailable: {exc}") from exc

    return wrapper


def redis_client(settings: Settings, *, blocking: bool = False) -> redis.Redis:
    """A client whose every call fails fast when Redis is down.

    The blocking client serves long waits (XREAD BLOCK), so its socket timeout
    outlasts the longest wait; connecting stays bounded either way.
    """
    socket_timeout = (
        limits.MAX_WAIT_S + settings.redis_timeout if blocking else settings.redis_timeout
    )
    # Every request thread may hold one connection of each pool at once.
    # (redis-py caps a pool at 100 by default, and Redis.from_url drops
    # max_connections, so the pool is built here.)
    options: dict[str, Any] = {
        "max_connections": settings.web_threads + POOL_SPARE_CONNECTIONS,
        "decode_responses": True,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "retry_on_timeout": False,
    }
    if settings.redis_mode == "sentinel":
        return sentinel_master(settings, **options)
    if settings.redis_mode == "cluster":
        return cluster_client(settings, **options)
    pool = redis.ConnectionPool.from_url(settings.redis_url, **options)
    return redis.Redis(connection_pool=pool)


def sentinel_master(settings: Settings, **options: Any) -> redis.Redis:
    """A client of the primary that the sentinels name now.

    redis-py's SentinelConnectionPool asks the sentinels for the primary's
    address at each new connection; a connection that finds the primary gone
    (or demoted: READONLY) fails with ``ConnectionError`` (so a 503) and the
    next one goes to the primary the sentinels have promoted. The database,
    user and password come from ``JOBGATE_REDIS_URL`` (its host is not used).
    """
    options.update(url_credentials(settings.redis_url))
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        settings.sentinel_addresses,
        sentinel_kwargs={
            "socket_timeout": settings.redis_timeout,
            "socket_connect_timeout": settings.redis_timeout,
        },
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        settings.redis_sentinel_master, **options
    )
    return client


def url_credentials(url: str) -> dict[str, Any]:
    """The database, user and password a ``redis://`` URL names (those it names)."""
    parsed: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    return {k: parsed[k] for k in ("db", "username", "password") if parsed.get(k) is not None}


def cluster_client(settings: Settings, **options: Any) -> redis.Redis:
    """A Redis Cluster client: ``JOBGATE_REDIS_URL`` names any node, the
    others are found from it; each command goes to the node of its key's slot
    (redis-py's RedisCluster follows MOVED/ASK and refreshes its slot map).

    Typed as ``redis.Redis``: RedisCluster has the same command methods, and
    the store never uses one it lacks (no transaction across slots, no script
    whose keys span slots: workers/lua/_cluster.lua)."""
    # A pool per node; max_connections bounds each node's.
    options.pop("health_check_interval", None)
    client: Any = redis.RedisCluster.from_url(settings.redis_url, **options)
    return cast(redis.Redis, client)
