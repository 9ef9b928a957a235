"""The Redis clients of the store, and Redis errors as Jobgate's error."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import redis

from workers import limits
from workers.config import Settings
from workers.errors import BackendUnavailable

# Connections beyond one per request thread: watchdogs, heartbeats, pipelines.
POOL_SPARE_CONNECTIONS = 16
# redis-py checks an idle connection before reuse after this many seconds.
HEALTH_CHECK_INTERVAL_S = 30

P = ParamSpec("P")
R = TypeVar("R")


def backend_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Redis unreachable or too slow → ``BackendUnavailable`` (503)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
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
    pool = redis.ConnectionPool.from_url(
        settings.redis_url,
        # Every request thread may hold one connection of each pool at once.
        # (redis-py caps a pool at 100 by default, and Redis.from_url drops
        # max_connections, so the pool is built here.)
        max_connections=settings.web_threads + POOL_SPARE_CONNECTIONS,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=settings.redis_timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry_on_timeout=False,
    )
    return redis.Redis(connection_pool=pool)
