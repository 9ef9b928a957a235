"""workers/webhooks.py without the network: the SSRF guard, signing, settings."""

from __future__ import annotations

import base64
import os
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from workers.config import Settings
from workers.errors import ConfigError
from workers.webhooks import UnsafeCallback, check_url, sign

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def test_a_signature_verifies_with_the_standard_webhooks_library() -> None:
    body = b'{"type":"done","data":{"id":"j1","status":"DONE"}}'
    now = int(time.time())  # the library refuses timestamps over 5 minutes old
    headers = {
        "webhook-id": "msg_01J",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(SECRET, "msg_01J", now, body),
    }

    assert Webhook(SECRET).verify(body, headers) == {
        "type": "done",
        "data": {"id": "j1", "status": "DONE"},
    }
    headers["webhook-signature"] = sign(SECRET, "msg_01J", now, body + b" ")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, headers)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://localhost:8443/hook", "loopback"),  # refused after DNS, not by name
        ("https://10.1.2.3/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://100.100.100.200/", "metadata"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://198.51.100.7/", "private"),  # documentation range: not global
        ("https://100.64.0.1/", "public"),  # shared address space (CGNAT)
        ("http://93.184.215.14/hook", "scheme must be https"),
        ("ftp://93.184.215.14/hook", "scheme"),
        ("https://user:pw@93.184.215.14/hook", "credentials"),
        ("https:///nohost", "no host"),
    ],
)
def test_the_guard_refuses(url: str, why: str) -> None:
    with pytest.raises(UnsafeCallback, match=why):
        check_url(url, ())


def test_a_public_address_passes_and_the_target_is_the_checked_address() -> None:
    target = check_url("https://93.184.215.14:8443/in?x=1", ())

    assert (target.scheme, target.port, target.path, target.address) == (
        "https",
        8443,
        "/in?x=1",
        "93.184.215.14",
    )


def test_an_allowed_host_may_be_private_and_use_http() -> None:
    target = check_url("http://127.0.0.1:9000/hook", ("127.0.0.1",))
    assert (target.address, target.port) == ("127.0.0.1", 9000)
    with pytest.raises(UnsafeCallback, match="loopback"):
        check_url("https://127.0.0.2:9000/hook", ("127.0.0.1",))  # another host: not allowed


def test_webhook_settings_are_read_and_checked() -> None:
    settings = Settings.from_env(
        {
            "JOBGATE_WEBHOOK_SECRETS": f"acme:{SECRET},beta:{SECRET}",
            "JOBGATE_WEBHOOK_RETRY_DELAYS": "0.5, 2,60",
            "JOBGATE_WEBHOOK_ALLOW_HOSTS": "hooks.internal,127.0.0.1",
        }
    )
    assert settings.webhook_secret("acme") == SECRET
    assert settings.webhook_secret("nobody") is None
    assert settings.webhook_retry_delays == (0.5, 2.0, 60.0)
    assert settings.webhook_allow_hosts == ("hooks.internal", "127.0.0.1")
    assert Settings.from_env(settings.to_env()) == settings
    default = sum(Settings.from_env({}).webhook_retry_delays)
    assert 20 * 3600 <= default <= 28 * 3600  # about a day


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("JOBGATE_WEBHOOK_SECRETS", "acme:not-a-secret"),
        ("JOBGATE_WEBHOOK_SECRETS", "acme:whsec_c2hvcnQ="),  # 5 bytes
        ("JOBGATE_WEBHOOK_SECRETS", f"acme:{SECRET},acme:{SECRET}"),
        ("JOBGATE_WEBHOOK_RETRY_DELAYS", "5,soon"),
        ("JOBGATE_WEBHOOK_RETRY_DELAYS", "5,0"),
    ],
)
def test_bad_webhook_settings_stop_the_start(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})
