"""Every error the client raises: one class per family of problem codes.

All derive from :class:`JobgateError`, which carries the HTTP ``status`` and
the problem ``code`` (``None`` when no answer came at all) and the whole
problem document in ``problem``.
"""

from __future__ import annotations

from typing import Any


class JobgateError(Exception):
    """Root of every error the client raises."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.code = code
        self.problem: dict[str, Any] = problem or {}


class JobFailed(JobgateError):
    """The job ended FAILED; ``code`` is its ``error.code`` (``JOB_ERROR``, ``TIMED_OUT``, …)."""

    def __init__(
        self,
        job_id: str,
        error: dict[str, Any],
        *,
        status: int | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        self.job_id = job_id
        self.error = error
        self.message: str = str(error.get("message", "The job failed."))
        self.retryable: bool = bool(error.get("retryable", False))
        self.details: dict[str, Any] = dict(error.get("details") or {})
        code = str(error.get("code", "JOB_ERROR"))
        super().__init__(
            f"job {job_id} failed: {code}: {self.message}",
            status=status,
            code=code,
            problem=problem,
        )


class JobNotFound(JobgateError):
    """404: no such job (never issued, another tenant's, or its tombstone is gone)."""


class JobExpired(JobgateError):
    """410: the job's retention has passed, or it was deleted."""


class IdConflict(JobgateError):
    """409: the id is taken by a job with another type or params (or an expired one)."""


class ValidationFailed(JobgateError):
    """The server refused the request as invalid (422, 400, 406, 413, 415).

    ``errors`` maps each field to its messages (for 422 ``VALIDATION_ERROR``).
    """

    @property
    def errors(self) -> dict[str, Any]:
        return dict(self.problem.get("errors") or {})


class Unauthorized(JobgateError):
    """401: no API key, or a wrong one."""


class RateLimited(JobgateError):
    """429 (``RATE_LIMITED``, ``TOO_MANY_JOBS``) still answered when the retry deadline came."""


class Unavailable(JobgateError):
    """No usable answer before the retry deadline: unreachable, 503, or another 5xx."""


class WaitTimeout(JobgateError, TimeoutError):
    """``wait(timeout=…)`` (or ``result``, ``rows``, ``download``) ran out of time.

    The job goes on.
    """
