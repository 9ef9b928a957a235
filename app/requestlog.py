"""Request ids and the access log, in two hooks.

Each request gets an id (the client's ``X-Request-ID`` when sane, else a new
one): it is echoed in the answer's ``X-Request-ID``, bound to every line
logged while the request runs (``workers.logs``), and stored on a job the
request creates (``rid`` in its record), so the worker's lines carry it too.
After the request, one ``jobgate.access`` line: method, route (the URL rule,
not the path: ids stay out of the route), status, duration, request id, tenant.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from workers import logs

access_log = logging.getLogger("jobgate.access")


def _begin() -> None:
    g.request_started = time.perf_counter()
    g.request_id = logs.request_id_from(request.headers.get(logs.REQUEST_ID_HEADER))
    g.log_token = logs.bind(request_id=g.request_id)


def _end(response: Response) -> Response:
    rid = g.get("request_id")
    if rid is None:  # a request that never reached _begin (not expected)
        return response
    response.headers[logs.REQUEST_ID_HEADER] = rid
    rule = request.url_rule
    duration_ms = (time.perf_counter() - g.request_started) * 1000
    access_log.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "method": request.method,
            "route": rule.rule if rule is not None else None,
            "status": response.status_code,
            "duration_ms": round(duration_ms, 2),
            "tenant": g.get("tenant"),
        },
    )
    return response


def _unbind(_: BaseException | None) -> None:
    token = g.pop("log_token", None)
    if token is not None:
        logs.unbind(token)


def install(app: Flask) -> None:
    """Register the hooks. Call before any other hook: the id must exist
    before anything logs, and the access line comes after every other
    after-request hook (Flask runs those last-registered first)."""
    app.before_request(_begin)
    app.after_request(_end)
    app.teardown_request(_unbind)
