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
    if not access_log.isEnabledFor(logging.INFO):
        return response
    rule = request.url_rule
    method, status = request.method, response.status_code
    duration_ms = (time.perf_counter() - g.request_started) * 1000
    # The record made directly: Logger.info would first walk the stack for
    # the caller's file and line (findCaller), which no format of Jobgate's
    # writes, a quarter of the line's cost. Everything else is Logger.info's
    # own way: the same record, filters and handlers.
    record = access_log.makeRecord(
        access_log.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %s",
        (method, request.path, status),
        None,
        extra={
            "method": method,
            "route": rule.rule if rule is not None else None,
            "status": status,
            "duration_ms": round(duration_ms, 2),
            "tenant": g.get("tenant"),
        },
    )
    access_log.handle(record)
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
