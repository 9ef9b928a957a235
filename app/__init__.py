"""The HTTP edge of Jobgate: ``create_app(settings=None)``. Nothing here runs a job."""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from types import FunctionType, MethodType
from typing import Any

from flask import Blueprint, Flask, g, request
from flask_smorest import Api
from werkzeug.middleware.proxy_fix import ProxyFix

from app import console, events, http_metrics, jobs, ops, requestlog
from app.auth import KeyRing, authenticate, check_bind_allowed, identify
from app.context import Jobgate, WaitSlots
from app.errors import register_error_handlers
from app.metrics import metrics_registry
from app.ratelimit import limit_rate
from app.schemas import ResultEntrySchema, ResultsBodySchema, submit_body_doc, submit_schemas
from workers import logs, registry, webhooks
from workers.celery_app import make_celery, send_delivery
from workers.config import Settings
from workers.store import JobStore

API_VERSION = "1.0.0"
SWAGGER_UI_ASSETS = "/docs/assets"
# More functions than the code defines: what JobgateFlask.ensure_sync remembers.
ENSURE_SYNC_CACHE = 4096


class JobgateFlask(Flask):
    """Flask, with ``ensure_sync`` answered from a cache.

    Flask asks ``ensure_sync`` about every hook and view it calls, and
    flask-smorest's decorators ask again at each layer: 18 times a poll, each
    an ``inspect.iscoroutinefunction`` (a twentieth of a poll's CPU). Whether
    a function is a coroutine function does not change, so each is asked once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # function -> whether it is a plain (not a coroutine) function. Keyed
        # by the function itself, never by a bound method (a MethodView's are
        # new each request), so it holds one entry per function of the code.
        self._plain: dict[FunctionType, bool] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        code = func.__func__ if isinstance(func, MethodType) else func
        if not isinstance(code, FunctionType):  # a partial, a callable object
            return super().ensure_sync(func)
        plain = self._plain.get(code)
        if plain is None:
            plain = super().ensure_sync(code) is code
            if len(self._plain) < ENSURE_SYNC_CACHE:  # functions made per request stay out
                self._plain[code] = plain
        return func if plain else super().ensure_sync(func)


def swagger_ui_assets() -> Blueprint:
    """Swagger UI's static files (swagger-ui.css, swagger-ui-bundle.js, …), as
    the PyPI package swagger-ui-py ships them."""
    static = importlib.resources.files("swagger_ui") / "static"
    return Blueprint(
        "swagger_ui_assets", __name__, static_folder=str(static), static_url_path=SWAGGER_UI_ASSETS
    )


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logs.configure(settings)
    registry.load_job_modules(settings.job_modules)
    keyring = KeyRing.from_settings(settings)
    check_bind_allowed(settings, keyring)

    app = JobgateFlask("jobgate")
    app.config.update(
        # One byte more than the limit: see app.jobs.request_body.
        MAX_CONTENT_LENGTH=settings.max_body + 1,
        API_TITLE="Jobgate",
        API_VERSION=API_VERSION,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        # Swagger UI's scripts from the swagger-ui-py package, served here:
        # no CDN, so nothing the page runs can change without a release.
        OPENAPI_SWAGGER_UI_URL=SWAGGER_UI_ASSETS + "/",
    )
    api = Api(app)
    schemas = submit_schemas(settings, registry.available_types(settings))
    for schema in schemas.values():
        api.spec.components.schema(schema.__name__, schema=schema)
    api.spec.components.schema("SubmitRequest", submit_body_doc(schemas))
    api.spec.components.schema("ResultEntry", schema=ResultEntrySchema)
    api.spec.components.schema("ResultsRequest", schema=ResultsBodySchema)
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    api.spec.components.security_scheme(
        "apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    )
    app.register_blueprint(swagger_ui_assets())
    assert events.JobEvents is not None  # its route is on jobs.blp, registered below
    app.register_blueprint(console.blp)
    api.register_blueprint(jobs.blp)
    api.register_blueprint(ops.blp)
    register_error_handlers(app)
    requestlog.install(app)

    # Flask runs before-request hooks in the order they are registered: who is
    # asking, then the rate limit (by key digest or client address), then 401.
    @app.before_request
    def _identify() -> None:
        if request.blueprint == jobs.blp.name:
            identify(keyring)
            logs.bind(tenant=g.tenant)  # undone with the request id's binding
        else:
            g.tenant = None

    if settings.rate_limit:
        limit_rate(app, settings)

    @app.before_request
    def _authenticate() -> None:
        if request.blueprint == jobs.blp.name:
            authenticate()

    if settings.trusted_proxies:
        # Client address, scheme and host from X-Forwarded-* set by this many
        # proxies in front; without it those headers are ignored.
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )

    store = JobStore.from_settings(settings)
    store.warn_unless_noeviction()
    http = http_metrics.install(app, store.redis)
    celery = make_celery(settings)
    # A cancel's webhook event goes out at once (else the sweep sends it).
    store.hook_sink = webhooks.dispatcher(
        store, lambda hook_id: send_delivery(celery, settings, hook_id)
    )
    app.extensions["jobgate"] = Jobgate(
        settings=settings,
        store=store,
        celery=celery,
        keyring=keyring,
        submit_schemas=schemas,
        submit_loaders={name: schema() for name, schema in schemas.items()},
        wait_slots=WaitSlots(
            settings.web_threads, settings.tenant_wait_share, len(keyring.tenants)
        ),
        metrics=metrics_registry(store, http),
    )

    return app
