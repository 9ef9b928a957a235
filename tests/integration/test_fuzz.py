"""schemathesis fuzzes the API from its own OpenAPI document, with positive and
negative data: no 5xx, and no answer that contradicts the document."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from app import create_app
from app.schemas import MAX_POLL_WAIT, MAX_WAIT
from jobgate.redis_server import RedisServer
from tests.integration.conftest import make_test_settings
from workers.store import JobStore

pytestmark = pytest.mark.integration

FUZZ_KEY = "fuzz-key-not-secret"


@pytest.fixture(scope="module")
def fuzz_queue_heartbeat(redis_server: RedisServer) -> Iterator[str]:
    """A live heartbeat for a consumer of the fuzz queue, as in production
    (/readyz's 503 means "no worker on the job queue"), without a process that
    takes the fuzzer's jobs (see bound_waits)."""
    settings = make_test_settings(redis_server.url, queue="jobgate-fuzz")
    store = JobStore.from_settings(settings)
    stop = threading.Event()

    def beat() -> None:
        while True:
            store.mark_worker_alive("fuzz-consumer@test", queues=[settings.queue])
            if stop.wait(5):
                return

    beating = threading.Thread(target=beat, daemon=True)
    beating.start()
    yield settings.queue
    stop.set()
    beating.join(10)


@pytest.fixture(scope="module")
def openapi_schema(redis_server: RedisServer, fuzz_queue_heartbeat: str) -> Any:
    # With keys on: the fuzzer's requests carry a valid key (see check below).
    app = create_app(
        make_test_settings(
            redis_server.url, queue=fuzz_queue_heartbeat, api_keys={FUZZ_KEY: "fuzz"}
        )
    )
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    # A valid request may meet a job the fuzzer itself deleted a moment ago:
    # 410 JOB_EXPIRED is then the documented, correct answer.
    acceptance = schema.config.checks.positive_data_acceptance
    acceptance.expected_statuses = [*acceptance.expected_statuses, "410"]
    return schema


def without_callback(case: Any) -> None:
    """A callback URL must resolve to a public address (the SSRF guard), which
    no schema can say: a generated one is refused (422) however well formed.
    Callbacks are tested in test_webhooks.py and tests/unit/test_webhooks.py."""
    if isinstance(case.body, dict):
        case.body.pop("callback", None)


def bound_waits(case: Any) -> None:
    """No worker consumes the fuzz queue: a generated 60 s wait would just
    sleep. Waiting is tested elsewhere; here every answer comes at once."""
    if isinstance(case.body, dict) and valid_wait(case.body.get("wait"), MAX_WAIT):
        case.body["wait"] = min(case.body["wait"], 0.1)
    if case.headers and "Prefer" in case.headers:
        case.headers["Prefer"] = "respond-async"
    if case.query and valid_wait(case.query.get("wait"), MAX_POLL_WAIT):
        case.query["wait"] = min(case.query["wait"], 0.1)


def valid_wait(value: Any, highest: float) -> bool:
    """Only valid waits are shortened; invalid ones (bools too) stay invalid."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and 0 <= value <= highest


def operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_openapi_document(openapi_schema: Any, mode: GenerationMode) -> None:
    tested, nothing_to_negate = [], []
    for operation in operations(openapi_schema):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            bound_waits(case)
            if mode is GenerationMode.POSITIVE:
                without_callback(case)
            case.call_and_validate(headers={"Authorization": f"Bearer {FUZZ_KEY}"})

        try:
            check()
        except Unsatisfiable:
            # An operation without inputs (GET /healthz) has no invalid request.
            assert mode is GenerationMode.NEGATIVE, operation.label
            nothing_to_negate.append(operation.label)
            continue
        tested.append(operation.label)

    assert {"POST /v1/jobs", "GET /v1/jobs/{job_id}"} <= set(tested), (tested, nothing_to_negate)
