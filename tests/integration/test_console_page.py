"""/console as the server sends it: one shell for every console path, assets
from the package, a strict Content-Security-Policy, nothing from elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from workers.config import Settings

pytestmark = pytest.mark.integration

STATIC = Path(__file__).resolve().parents[2] / "app" / "console" / "static"
ASSET = re.compile(r'(?:src|href)="([^"]+)"')
IMPORT = re.compile(r"""^\s*import\s[^'"]*['"]([^'"]+)['"];""", re.MULTILINE)
PATHS = ["/console", "/console/", "/console/new", "/console/jobs/01JDX3Q9W2T6Z8M4N5P7R2S3V4"]


def directives(policy: str) -> dict[str, str]:
    parts = (part.strip().partition(" ") for part in policy.split(";"))
    return {name: value.strip() for name, _, value in parts}


@pytest.mark.parametrize("path", PATHS)
def test_every_console_path_gets_the_shell_with_a_strict_policy(
    client: FlaskClient, path: str
) -> None:
    page = client.get(path)

    assert page.status_code == 200
    assert page.mimetype == "text/html"
    policy = directives(page.headers["Content-Security-Policy"])
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert "unsafe" not in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["X-Frame-Options"] == "DENY"
    html = page.get_data(as_text=True)
    # Nothing inline for the policy to have to allow.
    assert "<style" not in html
    assert " style=" not in html
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
    assert re.search(r"\son[a-z]+=", html) is None
    assert '<meta name="jobgate-auth" content="off">' in html  # these tests run keyless


def test_the_shell_loads_only_assets_the_api_serves(client: FlaskClient) -> None:
    html = client.get("/console").get_data(as_text=True)
    assets = [a for a in ASSET.findall(html) if a.startswith("/console/assets/")]
    assert sorted(assets) == [
        "/console/assets/console.css",
        "/console/assets/favicon.svg",
        "/console/assets/main.js",
    ]
    # Links are this origin's paths or this page's anchors; nothing elsewhere.
    for link in ASSET.findall(html):
        assert link.startswith("#") or (link.startswith("/") and not link.startswith("//")), link
    main = client.get("/console/assets/main.js")
    assert main.status_code == 200
    assert main.mimetype in ("text/javascript", "application/javascript")
    assert "Content-Security-Policy" in main.headers
    assert client.get("/console/assets/console.css").mimetype == "text/css"


def test_every_module_import_resolves_to_a_served_file(client: FlaskClient) -> None:
    """The modules import each other by relative names, with no bundler to
    catch a wrong one: each import must be a file the blueprint serves."""
    modules = sorted(STATIC.rglob("*.js"))
    assert len(modules) >= 5
    for module in modules:
        for target in IMPORT.findall(module.read_text()):
            assert target.startswith("./") or target.startswith("../"), (module, target)
            resolved = (module.parent / target).resolve().relative_to(STATIC)
            served = client.get(f"/console/assets/{resolved.as_posix()}")
            assert served.status_code == 200, (module.name, target)
            served.close()


def test_no_asset_reaches_beyond_the_origin() -> None:
    for asset in STATIC.rglob("*"):
        if asset.is_file():
            text = asset.read_text()
            assert re.search(r"https?://(?!www\.w3\.org/2000/svg)", text) is None, asset
            assert "@import" not in text and "url(" not in text, asset


def test_the_shell_says_when_the_api_wants_a_key(settings: Settings) -> None:
    keyed: Flask = create_app(settings.with_overrides(api_keys={"k-1": "acme"}))
    html = keyed.test_client().get("/console").get_data(as_text=True)
    assert '<meta name="jobgate-auth" content="on">' in html
    # The shell itself needs no key: it holds no data; the API asks for one.
    assert keyed.test_client().get("/console/new").status_code == 200


def test_other_paths_under_console_are_not_found(client: FlaskClient) -> None:
    answer = client.get("/console/nowhere")
    assert answer.status_code == 404
    assert answer.get_json()["code"] == "NOT_FOUND"
    assert client.get("/console/assets/nothing.js").status_code == 404
