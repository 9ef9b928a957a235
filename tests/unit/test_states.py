"""workers/states.py: the statuses, error codes and Celery mapping of docs/api.md §1."""

from __future__ import annotations

import pytest

from workers.states import (
    CELERY_STATE_OF,
    CELERY_STATES,
    ErrorCode,
    Status,
    status_of_celery_state,
)

# docs/api.md §1, transcribed: status → the Celery states mapped to it.
CONTRACT_MAPPING = {
    Status.INITIALIZED: {"PENDING", "RECEIVED"},
    Status.RUNNING: {"STARTED", "PROGRESS", "RETRY"},
    Status.DONE: {"SUCCESS"},
    Status.FAILED: {"FAILURE", "REVOKED", "REJECTED"},
}

# docs/api.md §1, transcribed: error.code → error.retryable.
CONTRACT_RETRYABLE = {
    "JOB_ERROR": False,
    "CANCELLED_BY_USER": False,
    "TIMED_OUT": True,
    "TIME_LIMIT_EXCEEDED": False,
    "WORKER_LOST": True,
    "RESULT_TOO_LARGE": False,
    "INTERNAL_ERROR": True,
}


def test_there_are_exactly_four_statuses() -> None:
    assert {status.value for status in Status} == {"INITIALIZED", "RUNNING", "DONE", "FAILED"}


def test_only_done_and_failed_are_terminal() -> None:
    assert {status for status in Status if status.terminal} == {Status.DONE, Status.FAILED}


def test_celery_mapping_matches_the_contract_table() -> None:
    mapped: dict[Status, set[str]] = {status: set() for status in Status}
    for celery_state, status in CELERY_STATES.items():
        mapped[status].add(celery_state)

    assert mapped == CONTRACT_MAPPING


@pytest.mark.parametrize(
    ("celery_state", "status"),
    [(state, status) for status, states in CONTRACT_MAPPING.items() for state in states],
)
def test_celery_state_maps_to_its_status(celery_state: str, status: Status) -> None:
    assert status_of_celery_state(celery_state) is status


def test_unknown_custom_celery_state_counts_as_running() -> None:
    assert status_of_celery_state("HALFWAY") is Status.RUNNING


def test_reported_celery_state_maps_back_to_its_status() -> None:
    assert set(CELERY_STATE_OF) == set(Status)
    for status, celery_state in CELERY_STATE_OF.items():
        assert CELERY_STATES[celery_state] is status


def test_error_codes_and_retryable_match_the_contract_table() -> None:
    assert {code.value: code.retryable for code in ErrorCode} == CONTRACT_RETRYABLE


def test_celery_mapping_is_read_only() -> None:
    with pytest.raises(TypeError):
        CELERY_STATES["PENDING"] = Status.RUNNING  # type: ignore[index]
