"""Completion callbacks: Standard Webhooks deliveries, at least once, with retries.

A submit's ``callback: {url, events}`` is checked by the SSRF guard
(``check_url``) and kept in the job's record. The scripts that end or advance
the job queue a delivery in Redis (workers/store/hooks.py); ``dispatch``
claims the due ones and sends each to ``jobgate.webhook`` tasks on a queue of
their own (``<JOBGATE_QUEUE>.webhooks``, consumed by ``jobgate worker
--webhooks``), so a slow receiver never delays a job. ``deliver`` makes one
attempt: the body (event type and status document) is built once and kept,
so every retry carries the same ``webhook-id`` and body, signed afresh
(``webhook-timestamp`` is the attempt's). 2xx is delivered; anything else, a
timeout (WEBHOOK_TIMEOUT_S) or a refused address is retried after the next
of JOBGATE_WEBHOOK_RETRY_DELAYS (±20 % jitter), kept in Redis as the
delivery's due time, never as a Celery countdown; after the last, given up.

The guard: ``https`` only, and every address the host resolves to must be a
public one (no loopback, private, link-local, shared, reserved or cloud
metadata address), unless the host is in JOBGATE_WEBHOOK_ALLOW_HOSTS (then
``http`` too). It runs at submit (422) and again at each attempt, and the
attempt connects to the very address it checked (TLS still verified against
the URL's host name): a DNS answer that changes between check and connect
(rebinding) gains nothing. Redirects are not followed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import random
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import certifi
import orjson
import urllib3

from workers import keys as keyspace
from workers import limits
from workers.config import Settings
from workers.errors import BackendUnavailable, JobExpired, JobNotFound
from workers.job_metrics import bucket_of
from workers.keys import JobKeys
from workers.states import CallbackState, WebhookEvent
from workers.store import JobStore

log = logging.getLogger(__name__)

TASK_NAME = "jobgate.webhook"
USER_AGENT = "Jobgate-Webhooks/1"
# Seconds: a delivery takes from milliseconds to the 10 s timeout.
WEBHOOK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JITTER = 0.2
# Cloud metadata services that are not link-local (169.254.169.254 is).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("100.100.100.200", "fd00:ec2::254", "192.0.0.192")
)


def webhook_queue(settings: Settings) -> str:
    """The deliveries' queue: apart from jobs, so a slow receiver delays no job."""
    return f"{settings.queue}.webhooks"


# -- the SSRF guard ---------------------------------------------------------


class UnsafeCallback(ValueError):
    """A callback URL the guard refuses; the message says why."""


@dataclass(frozen=True)
class Target:
    """A callback URL checked: where to connect, and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str
    address: str  # the checked address the attempt connects to


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "the unspecified address (it reaches this host)"
    if address.is_link_local:
        return "a link-local address"
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_private:
        return "a private address"
    if not address.is_global or address.is_multicast:
        return "not a public address"
    return None


def check_url(url: str, allow_hosts: tuple[str, ...]) -> Target:
    """The URL's target, resolved and checked; ``UnsafeCallback`` when refused."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeCallback(f"Not a valid URL: {exc}.") from None
    host = (parts.hostname or "").lower()
    if not host:
        raise UnsafeCallback("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeCallback("The URL must not carry credentials.")
    allowed = host in {h.lower().strip("[]") for h in allow_hosts}
    schemes = ("https", "http") if allowed else ("https",)
    if parts.scheme not in schemes:
        only = "http or https" if allowed else "https (http only for JOBGATE_WEBHOOK_ALLOW_HOSTS)"
        raise UnsafeCallback(f"The URL's scheme must be {only}.")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeCallback(f"The host {host!r} does not resolve: {exc}.") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    if not allowed:
        for address in addresses:
            why = _refused(address)
            if why is not None:
                raise UnsafeCallback(
                    f"The host {host!r} resolves to {address}, {why} "
                    "(JOBGATE_WEBHOOK_ALLOW_HOSTS lists hosts that may)."
                )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, host, port, path, str(addresses[0]))


# -- signing (Standard Webhooks) ---------------------------------------------


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``, the key being
    the base64 part of ``whsec_<base64>``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


# -- dispatch ---------------------------------------------------------------

Send = Callable[[str], None]


def dispatch(store: JobStore, send: Send) -> int:
    """Claim the deliveries due now and send each to a task; how many were sent.

    A send that fails leaves its delivery claimed: due again once the claim
    expires (WEBHOOK_CLAIM_MS), for the next dispatch."""
    sent = 0
    while True:
        ids = store.claim_hooks()
        for hook_id in ids:
            send(hook_id)
            sent += 1
        if len(ids) < limits.WEBHOOK_BATCH:
            return sent


# -- one attempt --------------------------------------------------------------


def _body(store: JobStore, settings: Settings, payload: dict[str, Any]) -> bytes:
    """``{"type": <event>, "timestamp": ..., "data": <status document>}``: the
    job as the event found it (its record now, with the event's status,
    progress and message for a progress event; the event's own fields when
    the record has gone)."""
    from app.documents import as_of, iso, plain_links, status_document  # noqa: PLC0415

    keys = JobKeys.from_task_arg(payload["job"])
    data: dict[str, Any]
    try:
        record = store.read(keys, poll=False, inline_max=settings.inline_result_bytes)
    except (JobNotFound, JobExpired):
        data = {
            "id": keys.job_id,
            "status": payload["status"],
            "progress": payload["progress"],
            "message": payload["message"],
        }
        if payload.get("error"):
            data["error"] = orjson.loads(payload["error"])
    else:
        if payload["event"] == WebhookEvent.PROGRESS or not record.status.terminal:
            record = as_of(
                record,
                payload["status"],
                int(payload["progress"]),
                payload["message"],
                int(payload["change"]),
            )
        data = status_document(
            record, expose_tracebacks=settings.expose_tracebacks, link=plain_links
        )
    event = {"type": payload["event"], "timestamp": iso(int(payload["at"])), "data": data}
    return orjson.dumps(event)


@dataclass(frozen=True)
class Attempt:
    outcome: str  # delivered, rejected (not 2xx), error (no answer, or refused)
    status: int | None
    seconds: float
    detail: str = ""


def post(target: Target, headers: dict[str, str], body: bytes) -> Attempt:
    """POST to the checked address; TLS verified against the URL's host name."""
    timeout = urllib3.Timeout(total=limits.WEBHOOK_TIMEOUT_S)
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            timeout=timeout,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    else:
        pool = urllib3.HTTPConnectionPool(
            target.address, target.port, timeout=timeout, retries=False
        )
    default_port = 443 if target.scheme == "https" else 80
    host = target.host if ":" not in target.host else f"[{target.host}]"
    host_header = host if target.port == default_port else f"{host}:{target.port}"
    started = time.monotonic()
    try:
        with pool:
            response = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers={**headers, "Host": host_header},
                redirect=False,
                retries=False,
                preload_content=True,
                assert_same_host=False,
            )
    except urllib3.exceptions.HTTPError as exc:
        return Attempt("error", None, time.monotonic() - started, str(exc))
    seconds = time.monotonic() - started
    outcome = "delivered" if 200 <= response.status < 300 else "rejected"
    return Attempt(outcome, response.status, seconds)


def deliver(store: JobStore, settings: Settings, hook_id: str) -> str:
    """One attempt at delivery ``hook_id``; its outcome, recorded in Redis."""
    payload = store.hook(hook_id)
    if payload is None:
        return "settled"  # delivered or given up already (a second dispatch)
    keys = JobKeys.from_task_arg(payload["job"])
    if "body" not in payload:
        payload["body"] = _body(store, settings, payload).decode()
    body = payload["body"].encode()
    payload["attempts"] = int(payload.get("attempts", 0)) + 1
    secret = settings.webhook_secret(keys.tenant)
    if secret is None:
        attempt = Attempt("error", None, 0.0, f"no secret for tenant {keys.tenant!r}")
    else:
        try:
            target = check_url(payload["url"], settings.webhook_allow_hosts)
        except UnsafeCallback as exc:
            attempt = Attempt("error", None, 0.0, f"refused: {exc}")
        else:
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "webhook-id": hook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(secret, hook_id, timestamp, body),
            }
            attempt = post(target, headers, body)
    return _settle(store, settings, hook_id, keys, payload, attempt)


def _settle(
    store: JobStore,
    settings: Settings,
    hook_id: str,
    keys: JobKeys,
    payload: dict[str, Any],
    attempt: Attempt,
) -> str:
    delays = settings.webhook_retry_delays
    attempts = int(payload["attempts"])
    if attempt.outcome == "delivered":
        state, retry_ms = CallbackState.DELIVERED, 0
    elif attempts <= len(delays):
        state = CallbackState.PENDING
        delay = delays[attempts - 1] * random.uniform(1 - JITTER, 1 + JITTER)
        retry_ms = max(1, int(delay * 1000))
    else:
        state, retry_ms = CallbackState.FAILED, 0
    if attempt.outcome != "delivered":
        log.info(
            "webhook %s for job %s: attempt %d %s (%s)%s",
            hook_id,
            keys.job_id,
            attempts,
            attempt.outcome,
            attempt.status if attempt.status is not None else attempt.detail,
            f"; retry in {retry_ms / 1000:.1f} s" if state is CallbackState.PENDING else "",
        )
    store.settle_hook(hook_id, keys.record, state, payload, attempt.status, retry_ms)
    _count(store, attempt, given_up=state is CallbackState.FAILED)
    return state.value if state is not CallbackState.PENDING else f"retry:{attempt.outcome}"


def _count(store: JobStore, attempt: Attempt, *, given_up: bool) -> None:
    """jobgate_webhook_deliveries{outcome} and the latency histogram, in Redis."""
    try:
        pipe = store.redis.pipeline(transaction=False)
        pipe.hincrby(keyspace.STATS, f"webhook:{attempt.outcome}", 1)
        if given_up:
            pipe.hincrby(keyspace.STATS, "webhook:given_up", 1)
        pipe.pexpire(keyspace.STATS, limits.STATS_TTL_MS)
        if attempt.seconds > 0:
            bucket = bucket_of(attempt.seconds, WEBHOOK_BUCKETS)
            pipe.hincrby(keyspace.WEBHOOK_DURATION, f"{attempt.outcome}|{bucket}", 1)
            pipe.hincrbyfloat(keyspace.WEBHOOK_DURATION, f"{attempt.outcome}|sum", attempt.seconds)
            pipe.pexpire(keyspace.WEBHOOK_DURATION, limits.STATS_TTL_MS)
        pipe.execute()
    except Exception as exc:  # a metric must not fail the delivery
        log.warning("webhook metrics skipped: %s", exc)


def dispatcher(store: JobStore, send: Send) -> Callable[[], None]:
    """What ``JobStore.hook_sink`` runs: dispatch now, quietly when Redis fails."""

    def run() -> None:
        try:
            dispatch(store, send)
        except BackendUnavailable as exc:
            log.warning("webhooks not dispatched (the sweep will): %s", exc)

    return run
