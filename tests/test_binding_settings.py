"""Typed binding settings: each `SettingsSchema` loads into its dataclass, defined once."""

from __future__ import annotations

import dataclasses

import pytest
from marshmallow import fields

from lollms_server.bindings import Binding
from lollms_server.plugins import load_plugins
from lollms_server.sdk import SettingsSchema


def typed_binding_classes() -> list[type[Binding]]:
    """Every installed binding class whose settings are typed."""
    classes = load_plugins().binding_classes.values()
    return sorted(
        (cls for cls in classes if issubclass(cls.ConfigSchema, SettingsSchema)),
        key=lambda cls: cls.name,
    )


class Tiny(SettingsSchema):
    """A two-setting schema."""

    @dataclasses.dataclass(frozen=True)
    class Settings:
        """Its dataclass."""

        size: int
        api_key: str | None

    size = fields.Integer(load_default=3)
    api_key = fields.String(load_default=None, allow_none=True)


class TinyBinding(Binding):
    """A binding with typed settings."""

    name = "tiny"
    ConfigSchema = Tiny


def test_a_typed_binding_reads_attributes_and_masks_secrets() -> None:
    """The loaded dataclass is `settings`; `public_settings` still masks the key."""
    binding = TinyBinding("t", Tiny().load({"api_key": "sk-secret"}))
    assert binding.settings.size == 3
    assert binding.config == {"size": 3, "api_key": "sk-secret"}
    assert binding.public_settings() == {"size": 3, "api_key": "***"}


def test_the_shipped_plugins_have_typed_settings() -> None:
    """At least the openai binding (installed with the core's tests) is typed."""
    assert "openai" in {cls.name for cls in typed_binding_classes()}


@pytest.mark.parametrize("cls", typed_binding_classes(), ids=lambda cls: cls.name)
def test_dataclass_matches_the_schema_without_restating_defaults(cls: type[Binding]) -> None:
    """One field per schema field, none with a default of its own (the schema's are the
    only ones)."""
    schema = cls.ConfigSchema()
    assert isinstance(schema, SettingsSchema)
    settings_fields = dataclasses.fields(schema.Settings)
    assert {f.name for f in settings_fields} == set(schema.fields)
    restated = [
        f.name
        for f in settings_fields
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    ]
    assert not restated
