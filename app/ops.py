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
    @blp.alt_response(200, schema=HealthSchema, description="Redis answers and a worker was seen.")
    @blp.alt_response(503, schema=HealthSchema, description="Not ready.")
    def get(self) -> Response:
        """Readiness: Redis answers and a worker was seen within WORKER_ALIVE_S (limits.py)."""
        store = jobgate().store
        try:
            store.ping()
            workers = store.workers_seen(limits.WORKER_ALIVE_S)
        except BackendUnavailable:
            return json_response({"status": "unavailable", "redis": False, "workers": []}, 503)
        ready = bool(workers)
        body = {"status": "ready" if ready else "no-workers", "redis": True, "workers": workers}
        return json_response(body, 200 if ready else 503)
