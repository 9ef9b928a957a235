"""An off-the-shelf LRO client follows a submit to its end: azure-core's
poller (LROBasePolling with LocationPolling) against real gunicorn and a real
worker, reading Location and honouring Retry-After."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from azure.core import PipelineClient
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.polling import LROPoller
from azure.core.polling.base_polling import LocationPolling, LROBasePolling
from azure.core.rest import HttpRequest

from tests.support.harness import LiveServer

pytestmark = pytest.mark.integration


class Recorder(SansIOHTTPPolicy[Any, Any]):
    """Every answer the client received: when, its status and Retry-After."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, int, str | None]] = []

    def on_response(
        self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]
    ) -> None:
        answer = response.http_response
        self.seen.append(
            (
                time.monotonic(),
                request.http_request.method,
                answer.status_code,
                answer.headers.get("Retry-After"),
            )
        )


def test_azure_cores_poller_drives_a_submit_to_done_honouring_retry_after(
    live_server: LiveServer,
) -> None:
    recorder = Recorder()
    client: PipelineClient[Any, Any] = PipelineClient(
        base_url=live_server.url, per_call_policies=[recorder]
    )
    body = {"type": "demo.count", "params": {"n": 8, "delay": 0.5}, "wait": 0}
    initial = client.send_request(
        HttpRequest("POST", f"{live_server.url}/v1/jobs", json=body),
        _return_pipeline_response=True,
    )
    assert initial.http_response.status_code == 202
    # A polling interval of 0: any pause between polls is the server's advice.
    polling: LROBasePolling[Any, Any, Any] = LROBasePolling(
        timeout=0, lro_algorithms=[LocationPolling()]
    )

    poller: LROPoller[dict[str, Any]] = LROPoller(
        client, initial, lambda response: response.http_response.json(), polling
    )
    doc = poller.result(timeout=120)

    assert poller.status() == "Succeeded"
    assert doc["status"] == "DONE"
    assert doc["result"]["rows"][-1] == [7, 49]
    polls = [entry for entry in recorder.seen if entry[1] == "GET"]
    assert len(polls) >= 1
    assert polls[-1][2] == 200
    # azure-core polls once right after the submit, then waits before each
    # next poll for the Retry-After of the answer before it (the interval
    # given to the poller is 0).
    assert len(polls) >= 2, recorder.seen
    for (before, _, _, advice), (after, _, _, _) in itertools.pairwise(polls):
        assert advice is not None
        assert after - before >= int(advice) * 0.99, recorder.seen
