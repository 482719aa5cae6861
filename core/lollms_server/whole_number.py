"""An integer field that refuses a number with a fraction instead of truncating it."""

from __future__ import annotations

from typing import Any

from marshmallow import fields


class Whole(fields.Integer):
    """`fields.Integer`, except that 2.9 is "not a whole number" rather than 2 (marshmallow's
    `int(value)`); 2.0 and "2" still load as 2."""

    default_error_messages = {"fraction": "Not a whole number: {input}."}

    def _validated(self, value: Any) -> int:
        if isinstance(value, float) and not value.is_integer():
            raise self.make_error("fraction", input=value)
        return super()._validated(value)
