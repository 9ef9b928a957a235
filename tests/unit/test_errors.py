"""app/errors.py: the one table from error class to HTTP status."""

from __future__ import annotations

import pytest

from app.errors import HTTP_STATUS, http_status
from app.formats import NotAcceptable
from workers import errors
from workers.errors import ConfigError, JobgateError, JobNotFound


def all_subclasses(cls: type[JobgateError]) -> set[type[JobgateError]]:
    """Jobgate's own subclasses (not those a test defines), at any depth."""
    found = {sub for sub in cls.__subclasses__() if sub.__module__.startswith(("app.", "workers."))}
    return found.union(*(all_subclasses(sub) for sub in found)) if found else found


def test_every_error_the_api_answers_has_a_status_in_the_table() -> None:
    # ConfigError stops a process at start; it never reaches a client.
    answered = all_subclasses(JobgateError) - {ConfigError}

    assert answered <= HTTP_STATUS.keys()


def test_no_error_class_carries_an_http_status_itself() -> None:
    classes = [JobgateError, NotAcceptable, *all_subclasses(JobgateError)]

    assert [cls for cls in classes if hasattr(cls, "status")] == []


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.JobNotFound("x"), 404),
        (errors.JobExpired("x"), 410),
        (errors.JobFailed("x"), 400),
        (errors.IdConflict("x"), 409),
        (errors.ValidationFailed({}), 422),
        (errors.TooManyJobs("x"), 429),
        (errors.BackendUnavailable("x"), 503),
        (errors.Unauthorized("x"), 401),
        (errors.MalformedJSON("x"), 400),
        (errors.UnsupportedMediaType("x"), 415),
        (NotAcceptable("x"), 406),
        (JobgateError("x"), 500),
        (ConfigError("JOBGATE_X", "bad"), 500),
    ],
)
def test_each_error_is_answered_with_the_status_the_contract_gives_it(
    error: JobgateError, status: int
) -> None:
    assert http_status(error) == status


def test_a_subclass_is_answered_with_its_base_class_status() -> None:
    class TenantJobNotFound(JobNotFound):
        pass

    assert http_status(TenantJobNotFound("x")) == 404
