"""Every error leaves as application/problem+json (RFC 9457), from here only."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

from app.formats import NotAcceptable
from workers.errors import (
    BackendUnavailable,
    IdConflict,
    JobExpired,
    JobFailed,
    JobgateError,
    JobNotFound,
    MalformedJSON,
    TooManyJobs,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)

log = logging.getLogger(__name__)

PROBLEM_TYPE = "urn:jobgate:problem:{code}"
BACKEND_RETRY_AFTER = 5

# The HTTP status of each error class: the one place an error becomes a status.
# A class not listed (ConfigError, JobgateError itself) is a 500.
HTTP_STATUS: dict[type[JobgateError], int] = {
    JobFailed: 400,
    MalformedJSON: 400,
    Unauthorized: 401,
    JobNotFound: 404,
    NotAcceptable: 406,
    IdConflict: 409,
    JobExpired: 410,
    UnsupportedMediaType: 415,
    ValidationFailed: 422,
    TooManyJobs: 429,
    BackendUnavailable: 503,
}

# Werkzeug's HTTP errors get a code of their own.
HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
}


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = {
        "type": PROBLEM_TYPE.format(code=code),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    response = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    response.headers.update(headers or {})
    return response


def http_status(exc: JobgateError) -> int:
    """The status ``exc`` is answered with: its class's, or its nearest base's."""
    for cls in type(exc).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return 500


def _jobgate_error(exc: JobgateError) -> Response:
    headers: dict[str, str] = {}
    if isinstance(exc, BackendUnavailable):
        log.warning("backend unavailable: %s", exc.detail)
        headers["Retry-After"] = str(BACKEND_RETRY_AFTER)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="jobgate"'
    retry_after = exc.extra.pop("retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return problem(http_status(exc), exc.code, exc.title, exc.detail, headers, **exc.extra)


def _flatten_locations(messages: dict[str, Any]) -> dict[str, Any]:
    """webargs nests errors by location ({"query": {...}}); clients want fields."""
    flat: dict[str, Any] = {}
    for location_errors in messages.values():
        if isinstance(location_errors, dict):
            flat.update(location_errors)
    return flat


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = HTTP_CODES.get(status, "HTTP_ERROR")
    data = getattr(exc, "data", None) or {}
    extra: dict[str, Any] = {}
    if "messages" in data:
        extra["errors"] = _flatten_locations(data["messages"])
    detail = exc.description or exc.name
    if status == 422:
        detail = "The request does not validate; see errors."
    return problem(status, code, exc.name, detail, **extra)


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return problem(500, "INTERNAL_ERROR", "Internal error", "An unexpected error occurred.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(JobgateError, _jobgate_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
