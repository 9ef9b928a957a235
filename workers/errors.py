"""The one root exception of Jobgate and its children.

Each carries an HTTP status and a machine-readable ``code``; the API renders
any of them as problem+json in one handler (``app/errors.py``).
"""

from __future__ import annotations

from typing import Any


class JobgateError(Exception):
    status = 500
    code = "INTERNAL_ERROR"
    title = "Internal error"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class ConfigError(JobgateError):
    """A bad ``JOBGATE_*`` value: the process must not start."""

    code = "CONFIG_ERROR"
    title = "Invalid configuration"

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


class JobNotFound(JobgateError):
    status = 404
    code = "JOB_NOT_FOUND"
    title = "Job not found"


class JobExpired(JobgateError):
    status = 410
    code = "JOB_EXPIRED"
    title = "Job expired"


class JobFailed(JobgateError):
    status = 400
    code = "JOB_FAILED"
    title = "Job failed"


class IdConflict(JobgateError):
    status = 409
    code = "ID_CONFLICT"
    title = "Job id already used"


class ValidationFailed(JobgateError):
    status = 422
    code = "VALIDATION_ERROR"
    title = "Validation failed"

    def __init__(self, errors: dict[str, Any], detail: str = "") -> None:
        super().__init__(detail or "The request does not validate; see errors.", errors=errors)


class TooManyJobs(JobgateError):
    status = 429
    code = "TOO_MANY_JOBS"
    title = "Too many active jobs"


class BackendUnavailable(JobgateError):
    status = 503
    code = "BACKEND_UNAVAILABLE"
    title = "Backend unavailable"


class Unauthorized(JobgateError):
    status = 401
    code = "UNAUTHORIZED"
    title = "Unauthorized"


class MalformedJSON(JobgateError):
    status = 400
    code = "MALFORMED_JSON"
    title = "Malformed JSON"


class UnsupportedMediaType(JobgateError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"
    title = "Unsupported media type"
