"""The one root exception of Jobgate and its children.

Each carries a machine-readable ``code`` (the contract's) and a ``title``. No
HTTP here: the API maps each class to its status and renders it as
problem+json, in one table and one handler (``app/errors.py``).
"""

from __future__ import annotations

from typing import Any


class JobgateError(Exception):
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
    code = "JOB_NOT_FOUND"
    title = "Job not found"


class JobExpired(JobgateError):
    code = "JOB_EXPIRED"
    title = "Job expired"


class JobFailed(JobgateError):
    code = "JOB_FAILED"
    title = "Job failed"


class IdConflict(JobgateError):
    code = "ID_CONFLICT"
    title = "Job id already used"


class ValidationFailed(JobgateError):
    code = "VALIDATION_ERROR"
    title = "Validation failed"

    def __init__(self, errors: dict[str, Any], detail: str = "") -> None:
        super().__init__(detail or "The request does not validate; see errors.", errors=errors)


class TooManyJobs(JobgateError):
    code = "TOO_MANY_JOBS"
    title = "Too many active jobs"


class BackendUnavailable(JobgateError):
    code = "BACKEND_UNAVAILABLE"
    title = "Backend unavailable"


class Unauthorized(JobgateError):
    code = "UNAUTHORIZED"
    title = "Unauthorized"


class MalformedJSON(JobgateError):
    code = "MALFORMED_JSON"
    title = "Malformed JSON"


class UnsupportedMediaType(JobgateError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    title = "Unsupported media type"
