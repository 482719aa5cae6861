"""Typed binding settings: a `ConfigSchema` that loads into the binding's settings dataclass."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, post_load, pre_load


class SettingsSchema(Schema):
    """A binding's `ConfigSchema` whose load is an instance of `Settings` (a dataclass with one
    field per schema field and no defaults: the schema's `load_default`s are the only ones)."""

    Settings: ClassVar[type[Any]]

    @pre_load
    def _no_fractions(self, data: Any, **kwargs: Any) -> Any:
        """A `fields.Integer` setting refuses 2.5 as `Whole` does (marshmallow would load 2)."""
        if not isinstance(data, Mapping):
            return data
        for name, field in self.load_fields.items():
            key = field.data_key or name
            value = data.get(key)
            fraction = isinstance(value, float) and not value.is_integer()
            if fraction and isinstance(field, fields.Integer):
                raise ValidationError({key: [f"Not a whole number: {value}."]})
        return data

    @post_load
    def _as_settings(self, data: dict[str, Any], **kwargs: Any) -> Any:
        return self.Settings(**data)


def settings_dict(settings: Any) -> dict[str, Any]:
    """A loaded settings object as a plain dict (a dataclass's fields; a mapping copied)."""
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    return dict(settings)
