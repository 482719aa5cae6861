"""Typed binding settings: a `ConfigSchema` that loads into the binding's settings dataclass."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from marshmallow import Schema, post_load


class SettingsSchema(Schema):
    """A binding's `ConfigSchema` whose load is an instance of `Settings` (a dataclass with one
    field per schema field and no defaults: the schema's `load_default`s are the only ones)."""

    Settings: ClassVar[type[Any]]

    @post_load
    def _as_settings(self, data: dict[str, Any], **kwargs: Any) -> Any:
        return self.Settings(**data)


def settings_dict(settings: Any) -> dict[str, Any]:
    """A loaded settings object as a plain dict (a dataclass's fields; a mapping copied)."""
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    return dict(settings)
