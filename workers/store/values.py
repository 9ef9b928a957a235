"""General helpers the store and ``app/`` share: ids, JSON encodings, Redis time.

Pure functions; nothing here talks to Redis.
"""

from __future__ import annotations

from typing import Any

import orjson
from ulid import ULID


def new_id() -> str:
    """A fresh, time-ordered id (a ULID): jobs, errors, lease tokens."""
    return str(ULID())


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def canonical_params(params: dict[str, Any]) -> str:
    """The params as stored and compared for idempotent replays."""
    return orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode()


def redis_ms(reply: Any) -> int:
    """Redis's TIME reply (seconds, microseconds) in ms, as the prelude's ``now_ms``."""
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000
