"""/docs: Swagger UI from assets the API serves itself, nothing from a CDN."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

pytestmark = pytest.mark.integration

ASSET = re.compile(r'(?:src|href)="([^"]+)"')


def test_swagger_ui_loads_only_assets_served_by_the_api(client: FlaskClient) -> None:
    page = client.get("/docs")

    assert page.status_code == 200
    assets = ASSET.findall(page.get_data(as_text=True))
    assert len(assets) == 3  # the CSS and two scripts
    assert all(asset.startswith("/docs/assets/") for asset in assets), assets
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.get_data()) > 1000, asset
    bundle = client.get("/docs/assets/swagger-ui-bundle.js").get_data(as_text=True)
    assert "SwaggerUIBundle" in bundle
