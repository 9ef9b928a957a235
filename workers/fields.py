"""marshmallow fields for job params that take JSON types exactly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import fields


class StrictBoolean(fields.Boolean):
    """JSON ``true``/``false`` only. marshmallow's Boolean also takes 0, 1.0,
    "yes"..., and since ``0 == False`` in Python, narrowing its truthy/falsy
    sets does not help."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value
