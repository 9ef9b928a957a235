"""The Jobgate console: a web page at ``/console`` for people, served by the API.

One HTML shell for every console path (``/console``, ``/console/new``,
``/console/jobs/<id>``); the page's JavaScript modules route on the client and
talk to ``/v1`` with the same API key a program would use (kept in the tab's
session storage, sent as ``Authorization: Bearer``). Scripts and styles ship
inside this package (``static/``): no CDN, no external font, no build step.
Every answer of this blueprint carries a strict Content-Security-Policy: the
page may run only its own scripts and styles and talk only to its own origin.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template

from app.context import jobgate

ASSETS = "/console/assets"

# No inline script or style, nothing from another origin, no framing, no
# <base> or form posts elsewhere. img-src allows blob: for nothing: downloads
# are object URLs followed by an <a download>, which CSP does not govern.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}

blp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    static_folder="static",
    static_url_path="/assets",
    template_folder="templates",
)


@blp.after_request
def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    # Assets are revalidated (ETag / Last-Modified) rather than cached blind:
    # the modules import each other by plain relative names.
    response.headers["Cache-Control"] = "no-cache"
    return response


def _shell() -> str:
    return render_template(
        "console.html",
        auth="on" if jobgate().keyring.enabled else "off",
        assets=ASSETS,
    )


@blp.get("")
@blp.get("/")
def jobs_page() -> str:
    """The jobs list (the client renders it)."""
    return _shell()


@blp.get("/new")
def submit_page() -> str:
    """The submit form."""
    return _shell()


@blp.get("/jobs/<job_id>")
def job_page(job_id: str) -> str:
    """One job's page; whether the job exists is the API's answer, shown by the page."""
    return _shell()
