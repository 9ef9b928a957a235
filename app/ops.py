"""Operations endpoints: /healthz, /readyz (OpenAPI is served by flask-smorest)."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from prometheus_client import CONTENT_TYPE_LATEST

from app.context import jobgate
from app.documents import json_response
from app.metrics import prometheus_text
from app.schemas import HealthSchema
from workers import limits
from workers.errors import BackendUnavailable

blp = Blueprint("ops", __name__, description="Health and readiness.")


@blp.route("/healthz")
class Health(MethodView):
    @blp.alt_response(200, schema=HealthSchema, description="The process is alive.")
    def get(self) -> Response:
        """Liveness: the API process answers."""
        return json_response({"status": "ok"})


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.alt_response(200, description="Prometheus text exposition format.")
    def get(self) -> Response:
        """Job counters, queue depth and live workers, for Prometheus."""
        body = prometheus_text(jobgate().metrics)
        return Response(body, content_type=CONTENT_TYPE_LATEST)


@blp.route("/readyz")
class Ready(MethodView):
    @blp.alt_response(
        200, schema=HealthSchema, description="Redis answers and a worker consumes the job queue."
    )
    @blp.alt_response(503, schema=HealthSchema, description="Not ready: `reason` says why.")
    def get(self) -> Response:
        """Readiness: Redis answers and a worker consuming the job queue
        (JOBGATE_QUEUE) was seen within WORKER_ALIVE_S (limits.py). A worker on other queues only
        (``jobgate worker --sweep-only``, say) does not count."""
        jg = jobgate()
        queue = jg.settings.queue
        try:
            jg.store.ping()
            workers = jg.store.workers_seen(limits.WORKER_ALIVE_S)
            consumers = jg.store.workers_seen(limits.WORKER_ALIVE_S, queue=queue)
        except BackendUnavailable as exc:
            body = {"status": "unavailable", "reason": f"Redis: {exc}", "redis": False}
            return json_response({**body, "workers": [], "queue": queue}, 503)
        body = {"redis": True, "workers": workers, "queue": queue, "consumers": consumers}
        if consumers:
            return json_response({"status": "ready", **body})
        reason = (
            f"no worker consuming the job queue {queue!r} has sent a heartbeat "
            f"within {limits.WORKER_ALIVE_S} s"
        )
        if workers:
            reason += f" (live workers, on other queues only: {', '.join(workers)})"
        return json_response({"status": "no-workers", "reason": reason, **body}, 503)
