"""``@job`` and the registry of job types.

The API and the workers import the same modules (the built-in ones and
``JOBGATE_JOB_MODULES``), so both know the same types with the same schemas.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from workers.config import Settings
from workers.errors import ConfigError

BUILTIN_MODULES = ("workers.jobs.demo", "workers.jobs.files", "workers.jobs.sql")
DEFAULT_MAX_ATTEMPTS = 3
# A job's priority: 0-9, 9 the most urgent (workers/broker.py); a type's
# default, and the bounds a submit may choose within.
LOWEST_PRIORITY = 0
HIGHEST_PRIORITY = 9
DEFAULT_PRIORITY = 4
# A type's own queue: a name appended to JOBGATE_QUEUE (``<JOBGATE_QUEUE>.<name>``).
# ``control`` is the sweep's (workers.celery_app.control_queue).
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RESERVED_QUEUES = frozenset({"control"})

JobFunc = Callable[..., Any]
F = TypeVar("F", bound=JobFunc)


class _NoParams(Schema):
    pass


@dataclass(frozen=True)
class JobType:
    name: str
    func: JobFunc
    params: type[Schema]
    max_runtime: int | None
    description: str
    tabular: bool
    max_attempts: int
    columns: tuple[str, ...] | None = None
    # Whether the type is offered with these settings (None: always). A type
    # that is not is absent from /v1/job-types and unknown to a submit.
    available: Callable[[Settings], bool] | None = None
    # The params schema for these settings (a choice among configured names,
    # say); None: ``params`` as declared.
    params_for: Callable[[Settings], type[Schema]] | None = None

    def is_available(self, settings: Settings) -> bool:
        return self.available is None or self.available(settings)

    def for_settings(self, settings: Settings) -> JobType:
        """This type as these settings offer it (its settings-bound params schema)."""
        if self.params_for is None:
            return self
        params = self.params_for(settings)
        if params is self.params:
            return self
        key = (self.name, params)
        bound = _BOUND.get(key)
        if bound is None:
            bound = _BOUND[key] = dataclasses.replace(self, params=params, params_for=None)
        return bound

    # Its own queue's name ('' = JOBGATE_QUEUE itself), its default priority
    # and the (low, high) a submit may choose within.
    queue: str = ""
    priority: int = DEFAULT_PRIORITY
    priorities: tuple[int, int] = (LOWEST_PRIORITY, HIGHEST_PRIORITY)

    def runtime_limit(self, default: int) -> int:
        """Seconds this type may run: its own limit, else ``JOBGATE_MAX_RUNTIME``."""
        return self.max_runtime or default

    @functools.cached_property
    def params_schema(self) -> Schema:
        """One instance, made once: building a schema costs more than a load.

        Its integer fields are made strict: the OpenAPI document says
        ``integer``, and marshmallow's default would take 5.5 as 5 and "5" as 5.
        """
        schema = self.params()
        _strict_integers(schema)
        return schema

    def load_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Validate and deserialize; raises marshmallow.ValidationError."""
        loaded: dict[str, Any] = self.params_schema.load(params)
        return loaded

    def params_json_schema(self) -> dict[str, Any]:
        plugin = MarshmallowPlugin()
        APISpec("jobgate", "1", "3.0.3", plugins=[plugin])
        assert plugin.converter is not None
        schema: dict[str, Any] = plugin.converter.schema2jsonschema(self.params)  # type: ignore[no-untyped-call]
        return schema


def _strict_integers(schema: Schema) -> None:
    for field in schema.fields.values():
        if isinstance(field, fields.Integer):
            field.strict = True
        elif isinstance(field, fields.Nested) and isinstance(field.schema, Schema):
            _strict_integers(field.schema)
        elif isinstance(field, fields.List) and isinstance(field.inner, fields.Integer):
            field.inner.strict = True


_REGISTRY: dict[str, JobType] = {}
# Settings-bound variants (``for_settings``), made once per params schema.
_BOUND: dict[tuple[str, type[Schema]], JobType] = {}


def job(
    name: str,
    *,
    params: type[Schema] | None = None,
    max_runtime: int | None = None,
    description: str = "",
    tabular: bool = False,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    columns: tuple[str, ...] | None = None,
    available: Callable[[Settings], bool] | None = None,
    params_for: Callable[[Settings], type[Schema]] | None = None,
    queue: str = "",
    priority: int = DEFAULT_PRIORITY,
    priorities: tuple[int, int] = (LOWEST_PRIORITY, HIGHEST_PRIORITY),
) -> Callable[[F], F]:
    """Register ``func(ctx, **params)`` as the job type ``name``.

    ``columns`` names the fields of the rows the job publishes with
    ``ctx.publish`` (rows as lists), so partial results render as a table.
    ``available``: whether the settings offer the type (files.search needs
    JOBGATE_FILES_ROOT); ``params_for``: its params schema for the settings.
    ``queue``: the type's own queue (``<JOBGATE_QUEUE>.<queue>``; '' = the
    default queue), which ``jobgate worker --queues`` can choose.
    ``priority``: its jobs' default priority (0-9, 9 first); ``priorities``:
    the bounds a submit's ``priority`` must be within.
    """
    _check_queue_and_priority(name, queue, priority, priorities)

    def register(func: F) -> F:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.func is not func:
            raise ValueError(f"job type {name!r} is registered twice")
        _REGISTRY[name] = JobType(
            name=name,
            func=func,
            params=params or _NoParams,
            max_runtime=max_runtime,
            description=description or (func.__doc__ or "").strip().split("\n")[0],
            tabular=tabular,
            max_attempts=max_attempts,
            columns=columns,
            available=available,
            params_for=params_for,
            queue=queue,
            priority=priority,
            priorities=priorities,
        )
        return func

    return register


def _check_queue_and_priority(
    name: str, queue: str, priority: int, priorities: tuple[int, int]
) -> None:
    if queue and (not QUEUE_NAME.fullmatch(queue) or queue in RESERVED_QUEUES):
        raise ValueError(
            f"job type {name!r}: bad queue name {queue!r} ([A-Za-z0-9_-], not control)"
        )
    low, high = priorities
    if not LOWEST_PRIORITY <= low <= high <= HIGHEST_PRIORITY:
        raise ValueError(
            f"job type {name!r}: priorities {priorities} not within "
            f"{LOWEST_PRIORITY}..{HIGHEST_PRIORITY}, low first"
        )
    if not low <= priority <= high:
        raise ValueError(f"job type {name!r}: priority {priority} outside {priorities}")


def queues() -> list[str]:
    """The queue names the registered types declare ('' = the default queue), sorted."""
    return sorted({t.queue for t in _REGISTRY.values()} | {""})


def get(name: str) -> JobType | None:
    return _REGISTRY.get(name)


def all_types() -> list[JobType]:
    """Every registered type, whether or not the settings offer it."""
    return sorted(_REGISTRY.values(), key=lambda jt: jt.name)


def available_types(settings: Settings) -> list[JobType]:
    """The types these settings offer, each bound to them (``for_settings``)."""
    return [jt.for_settings(settings) for jt in all_types() if jt.is_available(settings)]


def get_available(name: str, settings: Settings) -> JobType | None:
    """Type ``name`` as these settings offer it; None if unknown or not offered."""
    job_type = _REGISTRY.get(name)
    if job_type is None or not job_type.is_available(settings):
        return None
    return job_type.for_settings(settings)


def load_job_modules(extra: Iterable[str] = ()) -> None:
    """Import the built-in job modules and the operator's; a bad name stops start-up."""
    for module in (*BUILTIN_MODULES, *extra):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError("JOBGATE_JOB_MODULES", f"cannot import {module!r}: {exc}") from exc
