"""Every knob of Jobgate, read from ``JOBGATE_*`` environment variables.

One frozen object holds them all; a bad value stops the process at start with
a message naming the variable (``ConfigError``), never later at first use.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

from workers.errors import ConfigError

KIB = 1024
MIB = 1024 * KIB

T = TypeVar("T")


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected 0/1, true/false, yes/no or on/off, got {raw!r}")


_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]i?B?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": KIB, "M": MIB, "G": 1024 * MIB}


def parse_size(raw: str) -> int:
    """``1048576``, ``512KiB``, ``16MiB`` or ``1G`` → bytes."""
    match = _SIZE.match(raw)
    if not match:
        raise ValueError(f"expected a size such as 1048576, 512KiB or 16MiB, got {raw!r}")
    unit = (match.group(2) or "")[:1].upper()
    return int(match.group(1)) * _SIZE_UNITS[unit]


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


_TENANT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_RATE = re.compile(r"^\s*\d+\s*(/|\s+per\s+)\s*(second|minute|hour|day)\s*$", re.IGNORECASE)


def parse_rate_limit(raw: str) -> str:
    """``50/second;2000/minute`` (Flask-Limiter's notation), checked, kept as text."""
    for part in raw.split(";"):
        if part.strip() and not _RATE.match(part):
            raise ValueError(f"expected limits such as 50/second;2000/minute, got {part!r}")
    return raw.strip()


def parse_api_keys(raw: str) -> dict[str, str]:
    """``tenant:key,tenant2:key2`` → {key: tenant}."""
    keys: dict[str, str] = {}
    for entry in _parse_list(raw):
        tenant, sep, key = entry.partition(":")
        if not sep or not key or not _TENANT.fullmatch(tenant):
            raise ValueError(f"expected tenant:key pairs (tenant [A-Za-z0-9._-]), got {entry!r}")
        if keys.get(key, tenant) != tenant:
            raise ValueError(f"one key is given to two tenants ({keys[key]} and {tenant})")
        keys[key] = tenant
    return keys


def _setting(
    env: str,
    default: Any,
    parse: Callable[[str], Any] = int,
    low: float | None = None,
    high: float | None = None,
    doc: str = "",
) -> Any:
    return field(
        default=default,
        metadata={"env": env, "parse": parse, "low": low, "high": high, "doc": doc},
    )


@dataclass(frozen=True)
class Settings:
    """All configuration, with the contract's defaults (docs/api.md §7)."""

    redis_url: str = _setting("JOBGATE_REDIS_URL", "redis://127.0.0.1:6379/0", str)
    broker_url: str = _setting("JOBGATE_BROKER_URL", "", str)
    bind_host: str = _setting("JOBGATE_BIND", "127.0.0.1", str)
    port: int = _setting("JOBGATE_PORT", 8000, int, 1, 65535)
    web_workers: int = _setting("JOBGATE_WEB_WORKERS", 2, int, 1, 64)
    web_threads: int = _setting("JOBGATE_WEB_THREADS", 256, int, 1, 1024)
    worker_concurrency: int = _setting(
        "JOBGATE_WORKER_CONCURRENCY", os.cpu_count() or 1, int, 1, 512
    )
    queue: str = _setting("JOBGATE_QUEUE", "jobgate", str)
    flower_port: int = _setting("JOBGATE_FLOWER_PORT", 5555, int, 1, 65535)
    flower_user: str = _setting("JOBGATE_FLOWER_USER", "admin", str)
    flower_password: str = _setting("JOBGATE_FLOWER_PASSWORD", "", str)
    default_wait: float = _setting("JOBGATE_DEFAULT_WAIT", 1.0, float, 0, 60)
    poll_timeout_default: int = _setting("JOBGATE_POLL_TIMEOUT_DEFAULT", 60, int, 0)
    poll_timeout_min: int = _setting("JOBGATE_POLL_TIMEOUT_MIN", 10, int, 1)
    poll_timeout_max: int = _setting("JOBGATE_POLL_TIMEOUT_MAX", 86400, int, 1)
    retention_default: int = _setting("JOBGATE_RETENTION_DEFAULT", 3600, int, 1)
    retention_min: int = _setting("JOBGATE_RETENTION_MIN", 300, int, 1)
    retention_max: int = _setting("JOBGATE_RETENTION_MAX", 604800, int, 1)
    tombstone_ttl: int = _setting("JOBGATE_TOMBSTONE_TTL", 604800, int, 1)
    cancel_grace: float = _setting("JOBGATE_CANCEL_GRACE", 10.0, float, 0.1, 3600)
    max_runtime: int = _setting("JOBGATE_MAX_RUNTIME", 14400, int, 1)
    max_result_bytes: int = _setting("JOBGATE_MAX_RESULT_BYTES", 16 * MIB, parse_size, 2)
    inline_result_bytes: int = _setting("JOBGATE_INLINE_RESULT_BYTES", 64 * KIB, parse_size, 0)
    tenant_max_active: int = _setting("JOBGATE_TENANT_MAX_ACTIVE", 100, int, 1)
    api_keys: dict[str, str] = _setting("JOBGATE_API_KEYS", None, parse_api_keys)
    api_keys_file: str = _setting("JOBGATE_API_KEYS_FILE", "", str)
    auth: str = _setting("JOBGATE_AUTH", "", str)
    rate_limit: str = _setting("JOBGATE_RATE_LIMIT", "", parse_rate_limit)
    max_body: int = _setting("JOBGATE_MAX_BODY", MIB, parse_size, 64)
    max_params_bytes: int = _setting("JOBGATE_MAX_PARAMS_BYTES", 64 * KIB, parse_size, 2)
    job_modules: tuple[str, ...] = _setting("JOBGATE_JOB_MODULES", (), _parse_list)
    expose_tracebacks: bool = _setting("JOBGATE_EXPOSE_TRACEBACKS", False, _parse_bool)
    task_events: bool = _setting("JOBGATE_TASK_EVENTS", False, _parse_bool)
    watchdog_interval: float = _setting("JOBGATE_WATCHDOG_INTERVAL", 1.0, float, 0.05, 60)
    lease_ttl: float = _setting("JOBGATE_LEASE_TTL", 20.0, float, 0.5, 600)
    sweep_interval: float = _setting("JOBGATE_SWEEP_INTERVAL", 5.0, float, 0.1, 600)
    shutdown_grace: float = _setting("JOBGATE_SHUTDOWN_GRACE", 20.0, float, 0, 3600)
    max_hand_backs: int = _setting("JOBGATE_MAX_HAND_BACKS", 10, int, 0, 1000)
    redis_timeout: float = _setting("JOBGATE_REDIS_TIMEOUT", 2.0, float, 0.1, 60)
    log_level: str = _setting("JOBGATE_LOG_LEVEL", "INFO", str)

    def __post_init__(self) -> None:
        if self.api_keys is None:
            object.__setattr__(self, "api_keys", {})
        if not self.broker_url:
            object.__setattr__(self, "broker_url", self.redis_url)
        self._check_bounds("poll_timeout", allow_zero_default=True)
        self._check_bounds("retention", allow_zero_default=False)
        if self.lease_ttl < 3 * self.watchdog_interval:
            raise ConfigError(
                "JOBGATE_LEASE_TTL",
                f"{self.lease_ttl} s is under 3 x JOBGATE_WATCHDOG_INTERVAL "
                f"({self.watchdog_interval} s): the watchdog renews the lease at that interval",
            )
        if self.auth not in {"", "on", "off"}:
            raise ConfigError("JOBGATE_AUTH", f"expected 'on' or 'off', got {self.auth!r}")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigError("JOBGATE_LOG_LEVEL", f"unknown level {self.log_level!r}")

    def _check_bounds(self, name: str, *, allow_zero_default: bool) -> None:
        low = getattr(self, f"{name}_min")
        high = getattr(self, f"{name}_max")
        default = getattr(self, f"{name}_default")
        prefix = f"JOBGATE_{name.upper()}"
        if low > high:
            raise ConfigError(f"{prefix}_MIN", f"{low} is above {prefix}_MAX={high}")
        if allow_zero_default and default == 0:
            return
        if not low <= default <= high:
            raise ConfigError(
                f"{prefix}_DEFAULT",
                f"{default} is outside {prefix}_MIN..{prefix}_MAX ({low}..{high})",
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting from ``environ`` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            meta = spec.metadata
            raw = env.get(meta["env"])
            if spec.name == "redis_url" and not raw:
                raw = env.get("REDIS_URL")
            if raw is None or (raw == "" and spec.default not in ("",)):
                continue
            values[spec.name] = _convert(meta, raw)
        values.update(overrides)
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **overrides)

    def to_env(self) -> dict[str, str]:
        """The ``JOBGATE_*`` variables that reproduce these settings in a child process."""
        env: dict[str, str] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, dict):
                text = ",".join(f"{tenant}:{key}" for key, tenant in value.items())
            elif isinstance(value, tuple):
                text = ",".join(value)
            elif isinstance(value, bool):
                text = "1" if value else "0"
            else:
                text = str(value)
            env[spec.metadata["env"]] = text
        return env

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys) or bool(self.api_keys_file)


def _convert(meta: Mapping[str, Any], raw: str) -> Any:
    name = meta["env"]
    try:
        value = meta["parse"](raw)
    except ValueError as exc:
        raise ConfigError(name, str(exc)) from None
    low, high = meta["low"], meta["high"]
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(name, f"expected a finite number, got {raw!r}")
    if low is not None and value < low:
        raise ConfigError(name, f"{value} is below the minimum {low}")
    if high is not None and value > high:
        raise ConfigError(name, f"{value} is above the maximum {high}")
    return value


def documented_settings() -> list[tuple[str, Any]]:
    """(variable, default) for every setting, for the README check."""
    return [(spec.metadata["env"], spec.default) for spec in fields(Settings)]
