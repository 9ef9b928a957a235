"""API keys → tenant. With no keys configured, auth is off: tenant ``default``."""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from pathlib import Path

from flask import g, request

from workers.config import Settings, parse_api_keys
from workers.errors import ConfigError, Unauthorized

log = logging.getLogger(__name__)

DEFAULT_TENANT = "default"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class KeyRing:
    """sha256(key) → tenant. Only digests are kept, and compared in constant time."""

    digests: tuple[tuple[bytes, str], ...]

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    @property
    def tenants(self) -> set[str]:
        return {tenant for _, tenant in self.digests}

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        entries = [(_digest(key), tenant) for key, tenant in settings.api_keys.items()]
        if settings.api_keys_file:
            entries.extend(_read_keys_file(settings.api_keys_file))
        return cls(tuple(entries))

    def tenant_for(self, key: str) -> str | None:
        digest = _digest(key)
        found = None
        for known, tenant in self.digests:  # no early exit: constant time
            if hmac.compare_digest(known, digest):
                found = tenant
        return found


def _read_keys_file(path: str) -> list[tuple[bytes, str]]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ConfigError("JOBGATE_API_KEYS_FILE", f"cannot read {path}: {exc}") from exc
    entries = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            ((hex_digest, tenant),) = parse_api_keys(line).items()
            digest = bytes.fromhex(hex_digest)
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise ConfigError("JOBGATE_API_KEYS_FILE", f"line {number}: expected tenant:sha256-hex")
        entries.append((digest, tenant))
    return entries


def presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key") or None


def identify(ring: KeyRing) -> None:
    """Who is asking: ``g.tenant`` (None when the key is missing or wrong).

    Runs before the rate limiter, so that it can count a request against its
    key's digest (``g.key_digest``) only once the key is known to be valid,
    and against the client address otherwise: a guessed key never gets a
    budget, or a Redis counter, of its own. ``authenticate`` refuses after.
    """
    g.key_digest = None
    if not ring.enabled:
        g.tenant = DEFAULT_TENANT
        return
    key = presented_key()
    g.tenant = ring.tenant_for(key) if key else None
    if g.tenant is not None and key:
        g.key_digest = _digest(key).hex()


def authenticate() -> None:
    """Refuse with 401 the request ``identify`` found no tenant for."""
    if g.tenant is None:
        raise Unauthorized("A valid API key is required (Authorization: Bearer <key>).")


def check_bind_allowed(settings: Settings, ring: KeyRing) -> None:
    """Refuse an open API on a non-loopback address unless JOBGATE_AUTH=off."""
    if ring.enabled:
        log.info("API keys configured for %d key(s): auth is on", len(ring.digests))
        return
    if settings.bind_host not in LOOPBACK_HOSTS and settings.auth != "off":
        raise ConfigError(
            "JOBGATE_BIND",
            f"no API keys are configured and {settings.bind_host} is not loopback: set "
            "JOBGATE_API_KEYS or JOBGATE_API_KEYS_FILE, or JOBGATE_AUTH=off to run open",
        )
    log.warning("AUTH IS OFF: no API keys configured; every request is tenant %r", DEFAULT_TENANT)
