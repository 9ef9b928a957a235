"""Per-key request rates (JOBGATE_RATE_LIMIT) with Flask-Limiter.

The counters live in the job Redis under ``jobgate:ratelimit`` (each with its
window's TTL), so every API process shares them. A request is counted against
its API key (as a digest: keys are never stored or logged), or against its
client address when auth is off.
"""

from __future__ import annotations

import math
import time
from urllib.parse import urlsplit

from flask import Flask, Response, g
from flask_limiter import HeaderNames, Limiter
from flask_limiter.util import get_remote_address

from app import jobs
from workers import keys as keyspace
from workers.config import Settings
from workers.store.connection import url_credentials


def rate_key() -> str:
    """The budget a request spends: its valid key's, else its address's."""
    digest: str | None = g.get("key_digest")
    if digest:
        return "key:" + digest[:32]
    return "addr:" + get_remote_address()


# Flask-Limiter would write Retry-After on *every* response (the time until
# its window resets), overwriting a poll's own advice; it writes here instead,
# and settle_retry_after decides what the client sees.
LIMITER_RETRY_AFTER = "X-Jobgate-Limiter-Retry-After"


def settle_retry_after(response: Response) -> Response:
    """Give the limiter's 429 a Retry-After that is never too early.

    Flask-Limiter computes ``int(reset_at - now)``, which truncates and says
    ``0`` in the last fraction of a second before the window moves: a client
    that obeys it is refused again. Round up from the reset time instead. Any
    other response keeps the Retry-After its endpoint chose (a poll's advice,
    the tenant cap's 429).
    """
    response.headers.pop(LIMITER_RETRY_AFTER, None)
    reset = response.headers.get("X-RateLimit-Reset")
    if response.status_code == 429 and reset is not None and "Retry-After" not in response.headers:
        seconds = math.ceil(float(reset) - time.time())
        response.headers["Retry-After"] = str(max(1, seconds))
    return response


def storage_uri(settings: Settings) -> str:
    """The limits library's URI of the job Redis, in each JOBGATE_REDIS_MODE."""
    if settings.redis_mode == "sentinel":
        parsed = urlsplit(settings.redis_url)
        auth = parsed.netloc.rpartition("@")[0]
        hosts = ",".join(settings.redis_sentinels)
        credentials = auth + "@" if auth else ""
        return f"redis+sentinel://{credentials}{hosts}/{settings.redis_sentinel_master}"
    if settings.redis_mode == "cluster":
        return "redis+cluster://" + settings.redis_url.split("://", 1)[1].split("/", 1)[0]
    return settings.redis_url


def storage_options(settings: Settings) -> dict[str, str | int | bool]:
    # Whole seconds: the options are typed str | int.
    timeout = math.ceil(settings.redis_timeout)
    options: dict[str, str | int | bool] = {
        "key_prefix": keyspace.RATE_LIMIT_PREFIX,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }
    if settings.redis_mode == "sentinel":
        # Counters are read where they are written: a replica lags behind.
        options["use_replicas"] = False
        options["db"] = url_credentials(settings.redis_url).get("db", 0)
    return options


def limit_rate(app: Flask, settings: Settings) -> Limiter:
    # Flask runs after-request hooks last-registered first: registered before
    # the limiter's own, this one sees the headers the limiter has written.
    app.after_request(settle_retry_after)
    limiter = Limiter(
        key_func=rate_key,
        app=app,
        storage_uri=storage_uri(settings),
        storage_options=storage_options(settings),
        strategy="moving-window",
        headers_enabled=True,
        header_name_mapping={HeaderNames.RETRY_AFTER: LIMITER_RETRY_AFTER},
        # When Redis is down the job endpoints answer 503 anyway; the limiter
        # must not turn that into a different error.
        swallow_errors=True,
    )
    # One budget per key across every /v1 endpoint, not one per endpoint.
    limiter.shared_limit(settings.rate_limit, scope="v1")(jobs.blp)
    return limiter
