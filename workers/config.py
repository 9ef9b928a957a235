"""Every knob of Jobgate, read from ``JOBGATE_*`` environment variables.

One frozen object holds them all; a bad value stops the process at start with
a message naming the variable (``ConfigError``), never later at first use.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from dataclasses import fields as fields_of
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields
from marshmallow.validate import OneOf, Range, Validator

from workers.errors import ConfigError

KIB = 1024
MIB = 1024 * KIB
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]i?B?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": KIB, "M": MIB, "G": 1024 * MIB}


def parse_size(raw: str) -> int:
    """``1048576``, ``512KiB``, ``16MiB`` or ``1G`` → bytes."""
    match = _SIZE.match(raw)
    if not match:
        raise ValueError(f"expected a size such as 1048576, 512KiB or 16MiB, got {raw!r}")
    unit = (match.group(2) or "")[:1].upper()
    return int(match.group(1)) * _SIZE_UNITS[unit]


def parse_list(raw: str) -> tuple[str, ...]:
    """``a, b,c`` → ('a', 'b', 'c')."""
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
    for entry in parse_list(raw):
        tenant, sep, key = entry.partition(":")
        if not sep or not key or not _TENANT.fullmatch(tenant):
            raise ValueError(f"expected tenant:key pairs (tenant [A-Za-z0-9._-]), got {entry!r}")
        if keys.get(key, tenant) != tenant:
            raise ValueError(f"one key is given to two tenants ({keys[key]} and {tenant})")
        keys[key] = tenant
    return keys


_SOURCE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SOURCE_SCHEMES = ("postgresql://", "postgres://", "sqlite:///")
_PASSWORD = re.compile(r"^([a-z]+://[^:/@]*:)([^@]*)@")


_PASSWORDS = re.compile(r"([a-z]+://[^:/@,=]*:)([^@]*)@")


def redact_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` → ``postgresql://user:***@host/db``."""
    return _PASSWORD.sub(r"\1***@", url)


def redact_urls(text: str) -> str:
    """Every URL's password in ``text`` as ``***`` (a whole JOBGATE_SQL_SOURCES)."""
    return _PASSWORDS.sub(r"\1***@", text)


@dataclass(frozen=True)
class SqlSources:
    """``JOBGATE_SQL_SOURCES``: named database URLs for ``sql.query``.

    Its ``repr`` hides passwords; ``str`` is the variable's text (for child
    processes only)."""

    entries: tuple[tuple[str, str], ...] = ()

    def names(self) -> list[str]:
        return [name for name, _url in self.entries]

    def url(self, name: str) -> str | None:
        return dict(self.entries).get(name)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __str__(self) -> str:
        return ",".join(f"{name}={url}" for name, url in self.entries)

    def __repr__(self) -> str:
        shown = ",".join(f"{name}={redact_url(url)}" for name, url in self.entries)
        return f"SqlSources({shown!r})"


def parse_sql_sources(raw: str) -> SqlSources:
    """``pg=postgresql://user@host/db,lite=sqlite:////data/x.db`` → SqlSources."""
    entries: dict[str, str] = {}
    for entry in parse_list(raw):
        name, sep, url = entry.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not _SOURCE_NAME.fullmatch(name):
            raise ValueError(f"expected name=url pairs (name [A-Za-z0-9._-]), got {name!r}")
        if not url.startswith(_SOURCE_SCHEMES):
            raise ValueError(
                f"source {name!r}: expected a postgresql:// or sqlite:/// URL, "
                f"got {redact_url(url)!r}"
            )
        if name in entries:
            raise ValueError(f"source {name!r} is given twice")
        entries[name] = url
    return SqlSources(tuple(entries.items()))


_WHSEC = re.compile(r"^whsec_([A-Za-z0-9+/]+={0,2})$")


def parse_webhook_secrets(raw: str) -> tuple[str, ...]:
    """``tenant:whsec_<base64>,...`` (Standard Webhooks' secret format), checked."""
    entries = parse_list(raw)
    tenants: set[str] = set()
    for entry in entries:
        tenant, sep, secret = entry.partition(":")
        match = _WHSEC.match(secret)
        if not sep or not _TENANT.fullmatch(tenant) or not match:
            raise ValueError(f"expected tenant:whsec_<base64> entries, got {entry!r}")
        try:
            key = base64.b64decode(match.group(1), validate=True)
        except binascii.Error:
            raise ValueError(f"the secret of {tenant!r} is not base64") from None
        if len(key) < 24:
            raise ValueError(f"the secret of {tenant!r} is under 24 bytes")
        if tenant in tenants:
            raise ValueError(f"two secrets for tenant {tenant!r}")
        tenants.add(tenant)
    return entries


def parse_delays(raw: str) -> tuple[float, ...]:
    """``5,30,120`` → (5.0, 30.0, 120.0): seconds, each > 0."""
    try:
        delays = tuple(float(item) for item in parse_list(raw))
    except ValueError:
        raise ValueError(f"expected seconds separated by commas, got {raw!r}") from None
    if not all(0 < d <= 7 * 86400 for d in delays):
        raise ValueError(f"each delay must be over 0 and at most 604800 s, got {raw!r}")
    return delays


class _Parsed(fields.Field):  # type: ignore[type-arg]
    """A text setting turned into a value by one of the parsers above."""

    def __init__(self, parse: Callable[[str], Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.parse = parse

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            return self.parse(str(value))
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


# How each kind of setting is read: marshmallow's own fields where one fits.
Kind = Callable[[], fields.Field]  # type: ignore[type-arg]
INT: Kind = fields.Integer
FLOAT: Kind = functools.partial(fields.Float, allow_nan=False)
TEXT: Kind = fields.String
BOOL: Kind = fields.Boolean  # 1/0, true/false, yes/no, on/off, in any case
SIZE: Kind = functools.partial(_Parsed, parse_size)
LIST: Kind = functools.partial(_Parsed, parse_list)
RATE: Kind = functools.partial(_Parsed, parse_rate_limit)
API_KEYS: Kind = functools.partial(_Parsed, parse_api_keys)
SQL_SOURCES: Kind = functools.partial(_Parsed, parse_sql_sources)
WEBHOOK_SECRETS: Kind = functools.partial(_Parsed, parse_webhook_secrets)
DELAYS: Kind = functools.partial(_Parsed, parse_delays)

# Retries of a webhook delivery that failed: about a day in all (23.7 h).
WEBHOOK_RETRY_DELAYS = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 28800.0)


def _setting(
    env: str,
    default: Any,
    kind: Kind = INT,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A dataclass field read from the variable ``env`` by a marshmallow field,
    within ``low``..``high`` or one of ``choices`` where given."""
    return field(
        default=default,
        metadata={"env": env, "kind": kind, "low": low, "high": high, "choices": choices},
    )


@dataclass(frozen=True)
class Settings:
    """All configuration, with the contract's defaults (docs/api.md §7)."""

    redis_url: str = _setting("JOBGATE_REDIS_URL", "redis://127.0.0.1:6379/0", TEXT)
    redis_mode: str = _setting(
        "JOBGATE_REDIS_MODE", "single", TEXT, choices=("single", "sentinel", "cluster")
    )
    redis_sentinels: tuple[str, ...] = _setting("JOBGATE_REDIS_SENTINELS", (), LIST)
    redis_sentinel_master: str = _setting("JOBGATE_REDIS_SENTINEL_MASTER", "", TEXT)
    redis_wait_replicas: int = _setting("JOBGATE_REDIS_WAIT_REPLICAS", 0, INT, 0, 16)
    redis_wait_timeout: float = _setting("JOBGATE_REDIS_WAIT_TIMEOUT", 1.0, FLOAT, 0.01, 60)
    broker_url: str = _setting("JOBGATE_BROKER_URL", "", TEXT)
    bind_host: str = _setting("JOBGATE_BIND", "127.0.0.1", TEXT)
    port: int = _setting("JOBGATE_PORT", 8000, INT, 1, 65535)
    web_workers: int = _setting("JOBGATE_WEB_WORKERS", 2, INT, 1, 64)
    web_threads: int = _setting("JOBGATE_WEB_THREADS", 256, INT, 1, 1024)
    tenant_wait_share: float = _setting("JOBGATE_TENANT_WAIT_SHARE", 0.5, FLOAT, 0.01, 1)
    header_timeout: float = _setting("JOBGATE_HEADER_TIMEOUT", 10.0, FLOAT, 0.5, 600)
    max_connections_per_client: int = _setting(
        "JOBGATE_MAX_CONNECTIONS_PER_CLIENT", 256, INT, 0, 100_000
    )
    worker_concurrency: int = _setting(
        "JOBGATE_WORKER_CONCURRENCY", os.cpu_count() or 1, INT, 1, 512
    )
    queue: str = _setting("JOBGATE_QUEUE", "jobgate", TEXT)
    flower_port: int = _setting("JOBGATE_FLOWER_PORT", 5555, INT, 1, 65535)
    flower_user: str = _setting("JOBGATE_FLOWER_USER", "admin", TEXT)
    flower_password: str = _setting("JOBGATE_FLOWER_PASSWORD", "", TEXT)
    default_wait: float = _setting("JOBGATE_DEFAULT_WAIT", 1.0, FLOAT, 0, 60)
    poll_timeout_default: int = _setting("JOBGATE_POLL_TIMEOUT_DEFAULT", 60, INT, 0)
    poll_timeout_min: int = _setting("JOBGATE_POLL_TIMEOUT_MIN", 10, INT, 1)
    poll_timeout_max: int = _setting("JOBGATE_POLL_TIMEOUT_MAX", 86400, INT, 1)
    retention_default: int = _setting("JOBGATE_RETENTION_DEFAULT", 3600, INT, 1)
    retention_min: int = _setting("JOBGATE_RETENTION_MIN", 300, INT, 1)
    retention_max: int = _setting("JOBGATE_RETENTION_MAX", 604800, INT, 1)
    tombstone_ttl: int = _setting("JOBGATE_TOMBSTONE_TTL", 604800, INT, 1)
    cancel_grace: float = _setting("JOBGATE_CANCEL_GRACE", 10.0, FLOAT, 0.1, 3600)
    max_runtime: int = _setting("JOBGATE_MAX_RUNTIME", 14400, INT, 1)
    max_result_bytes: int = _setting("JOBGATE_MAX_RESULT_BYTES", 64 * MIB, SIZE, 2)
    inline_result_bytes: int = _setting("JOBGATE_INLINE_RESULT_BYTES", 64 * KIB, SIZE, 0)
    tenant_max_active: int = _setting("JOBGATE_TENANT_MAX_ACTIVE", 100, INT, 1)
    api_keys: dict[str, str] = _setting("JOBGATE_API_KEYS", None, API_KEYS)
    api_keys_file: str = _setting("JOBGATE_API_KEYS_FILE", "", TEXT)
    auth: str = _setting("JOBGATE_AUTH", "", TEXT, choices=("", "on", "off"))
    rate_limit: str = _setting("JOBGATE_RATE_LIMIT", "", RATE)
    max_body: int = _setting("JOBGATE_MAX_BODY", MIB, SIZE, 64)
    max_params_bytes: int = _setting("JOBGATE_MAX_PARAMS_BYTES", 64 * KIB, SIZE, 2)
    job_modules: tuple[str, ...] = _setting("JOBGATE_JOB_MODULES", (), LIST)
    expose_tracebacks: bool = _setting("JOBGATE_EXPOSE_TRACEBACKS", False, BOOL)
    task_events: bool = _setting("JOBGATE_TASK_EVENTS", False, BOOL)
    watchdog_interval: float = _setting("JOBGATE_WATCHDOG_INTERVAL", 1.0, FLOAT, 0.05, 60)
    lease_ttl: float = _setting("JOBGATE_LEASE_TTL", 20.0, FLOAT, 0.5, 600)
    sweep_interval: float = _setting("JOBGATE_SWEEP_INTERVAL", 5.0, FLOAT, 0.1, 600)
    shutdown_grace: float = _setting("JOBGATE_SHUTDOWN_GRACE", 20.0, FLOAT, 0, 3600)
    redis_timeout: float = _setting("JOBGATE_REDIS_TIMEOUT", 2.0, FLOAT, 0.1, 60)
    log_level: str = _setting("JOBGATE_LOG_LEVEL", "INFO", TEXT)
    log_format: str = _setting("JOBGATE_LOG_FORMAT", "text", TEXT, choices=("json", "text"))
    trusted_proxies: int = _setting("JOBGATE_TRUSTED_PROXIES", 0, INT, 0, 10)
    max_hand_backs: int = _setting("JOBGATE_MAX_HAND_BACKS", 10, INT, 0, 1000)
    files_root: str = _setting("JOBGATE_FILES_ROOT", "", TEXT)
    sql_sources: SqlSources = _setting("JOBGATE_SQL_SOURCES", SqlSources(), SQL_SOURCES)
    sse_keepalive: float = _setting("JOBGATE_SSE_KEEPALIVE", 15.0, FLOAT, 0.1, 300)
    webhook_secrets: tuple[str, ...] = _setting("JOBGATE_WEBHOOK_SECRETS", (), WEBHOOK_SECRETS)
    webhook_retry_delays: tuple[float, ...] = _setting(
        "JOBGATE_WEBHOOK_RETRY_DELAYS", WEBHOOK_RETRY_DELAYS, DELAYS
    )
    webhook_allow_hosts: tuple[str, ...] = _setting("JOBGATE_WEBHOOK_ALLOW_HOSTS", (), LIST)
    webhook_concurrency: int = _setting("JOBGATE_WEBHOOK_CONCURRENCY", 16, INT, 1, 512)

    def __post_init__(self) -> None:
        if self.api_keys is None:
            object.__setattr__(self, "api_keys", {})
        if not self.broker_url:
            object.__setattr__(self, "broker_url", self.redis_url)
        self._check_redis_mode()
        self._check_bounds("poll_timeout", allow_zero_default=True)
        self._check_bounds("retention", allow_zero_default=False)
        if self.lease_ttl < 3 * self.watchdog_interval:
            raise ConfigError(
                "JOBGATE_LEASE_TTL",
                f"{self.lease_ttl} s is under 3 x JOBGATE_WATCHDOG_INTERVAL "
                f"({self.watchdog_interval} s): the watchdog renews the lease at that interval",
            )
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError("JOBGATE_LOG_LEVEL", f"unknown level {self.log_level!r}")

    def _check_redis_mode(self) -> None:
        if self.redis_mode == "cluster":
            if self.broker_url == self.redis_url:
                raise ConfigError(
                    "JOBGATE_BROKER_URL",
                    "JOBGATE_REDIS_MODE=cluster needs a broker of its own (kombu has no "
                    "Redis Cluster transport): a single Redis or RabbitMQ",
                )
            if self.redis_wait_replicas:
                raise ConfigError(
                    "JOBGATE_REDIS_WAIT_REPLICAS", "not supported with JOBGATE_REDIS_MODE=cluster"
                )
            return
        if self.redis_mode != "sentinel":
            return
        if not self.redis_sentinels:
            raise ConfigError(
                "JOBGATE_REDIS_SENTINELS", "JOBGATE_REDIS_MODE=sentinel needs host:port,..."
            )
        for entry in self.redis_sentinels:
            host, sep, port = entry.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError("JOBGATE_REDIS_SENTINELS", f"expected host:port, got {entry!r}")
        if not self.redis_sentinel_master:
            raise ConfigError(
                "JOBGATE_REDIS_SENTINEL_MASTER",
                "JOBGATE_REDIS_MODE=sentinel needs the primary's name",
            )

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``JOBGATE_REDIS_SENTINELS`` as (host, port) pairs."""
        pairs = [entry.rpartition(":") for entry in self.redis_sentinels]
        return [(host, int(port)) for host, _sep, port in pairs]

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
        """Read every setting from ``environ`` (default ``os.environ``).

        An unset or empty variable keeps its default (``JOBGATE_REDIS_URL``
        falls back to ``REDIS_URL``); a bad value raises ``ConfigError``
        naming the first variable that is wrong.
        """
        env = os.environ if environ is None else environ
        given = {name: raw for name, raw in env.items() if name.startswith("JOBGATE_") and raw}
        if "JOBGATE_REDIS_URL" not in given and env.get("REDIS_URL"):
            given["JOBGATE_REDIS_URL"] = env["REDIS_URL"]
        try:
            values: dict[str, Any] = _SCHEMA.load(given)
        except ValidationError as exc:
            variable = next(v for v in _VARIABLES if v in exc.messages_dict)
            problem = " ".join(str(m) for m in exc.messages_dict[variable])
            raise ConfigError(
                variable, f"{problem} (got {redact_urls(given[variable])!r})"
            ) from None
        values.update(overrides)
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **overrides)

    def to_env(self) -> dict[str, str]:
        """The ``JOBGATE_*`` variables that reproduce these settings in a child process."""
        env: dict[str, str] = {}
        for spec in fields_of(self):
            value = getattr(self, spec.name)
            if isinstance(value, dict):
                text = ",".join(f"{tenant}:{key}" for key, tenant in value.items())
            elif isinstance(value, tuple):
                text = ",".join(str(item) for item in value)
            elif isinstance(value, bool):
                text = "1" if value else "0"
            else:
                text = str(value)
            env[spec.metadata["env"]] = text
        return env

    def webhook_secret(self, tenant: str) -> str | None:
        """The tenant's ``whsec_...`` secret (JOBGATE_WEBHOOK_SECRETS), or None."""
        for entry in self.webhook_secrets:
            name, _, secret = entry.partition(":")
            if name == tenant:
                return secret
        return None

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys) or bool(self.api_keys_file)


def _schema() -> Schema:
    """One marshmallow schema that reads every setting, by its variable's name."""
    declared: dict[str, fields.Field] = {}  # type: ignore[type-arg]
    for spec in fields_of(Settings):
        meta = spec.metadata
        checks: list[Validator] = []
        if meta["low"] is not None or meta["high"] is not None:
            checks.append(Range(min=meta["low"], max=meta["high"]))
        if meta["choices"] is not None:
            checks.append(OneOf(meta["choices"]))
        declared[spec.name] = meta["kind"](data_key=meta["env"], validate=checks)
    return Schema.from_dict(declared, name="SettingsSchema")(unknown=EXCLUDE)


_SCHEMA = _schema()
_VARIABLES = [spec.metadata["env"] for spec in fields_of(Settings)]


def documented_settings() -> list[tuple[str, Any]]:
    """(variable, default) for every setting, for the README check."""
    return [(spec.metadata["env"], spec.default) for spec in fields_of(Settings)]
