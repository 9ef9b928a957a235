"""workers/registry.py: what a job type's params accept is what the OpenAPI document says."""

from __future__ import annotations

import pytest
from marshmallow import Schema, ValidationError, fields

from workers.registry import JobType


class LaxParams(Schema):
    size = fields.Integer(required=True)
    sizes = fields.List(fields.Integer())
    inner = fields.Nested(Schema.from_dict({"count": fields.Integer()}))


def job_type() -> JobType:
    return JobType(
        name="test.lax",
        func=lambda ctx, **params: None,
        params=LaxParams,
        max_runtime=None,
        description="",
        tabular=False,
        max_attempts=1,
    )


@pytest.mark.parametrize(
    "params",
    [
        {"size": 5.5},
        {"size": 5.0},
        {"size": "5"},
        {"size": 1, "sizes": [1.5]},
        {"size": 1, "inner": {"count": "2"}},
    ],
)
def test_integer_params_refuse_anything_but_json_integers(params: dict) -> None:
    with pytest.raises(ValidationError):
        job_type().load_params(params)


def test_integer_params_take_json_integers() -> None:
    loaded = job_type().load_params({"size": 5, "sizes": [1, 2], "inner": {"count": 2}})

    assert loaded == {"size": 5, "sizes": [1, 2], "inner": {"count": 2}}


def test_integer_params_are_documented_as_integers() -> None:
    assert job_type().params_json_schema()["properties"]["size"]["type"] == "integer"
