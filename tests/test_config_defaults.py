"""Each core setting has one default: the schema's `load_default`, which the commented default
config shows and the config dataclasses take."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
from marshmallow import Schema, fields

from lollms_server import config_sections as sections
from lollms_server.config import SERVER_DEFAULTS, Config, ConfigSchema, parse_config
from lollms_server.config_default import DEFAULT_CONFIG_TEXT
from lollms_server.request_limits import RequestLimits

SECTION = re.compile(r"^#?\s*\[([\w.]+)\]\s*$")
COMMENTED = re.compile(r"^#\s*(\w+)\s*=")


def section_schemas() -> dict[str, Schema]:
    """`[section]` name -> its schema, for every table-shaped section of lollms.toml."""
    found: dict[str, Schema] = {}
    for name, field in ConfigSchema().fields.items():
        if isinstance(field, fields.Nested):
            nested = field.schema
            assert isinstance(nested, Schema)
            found[name] = nested
    return found


def commented_keys(text: str) -> dict[str, set[str]]:
    """Section -> keys that appear only as comments (`# key = example`)."""
    keys: dict[str, set[str]] = {}
    section = ""
    for line in text.splitlines():
        if match := SECTION.match(line):
            section = match.group(1)
        elif (match := COMMENTED.match(line)) and section:
            keys.setdefault(section, set()).add(match.group(1))
    return keys


def schema_default(field: fields.Field[Any]) -> Any:
    default = field.load_default
    return default() if callable(default) else default


CASES = [
    (section, key, field)
    for section, schema in section_schemas().items()
    for key, field in schema.fields.items()
]


@pytest.mark.parametrize("section,key,field", CASES, ids=[f"{s}.{k}" for s, k, _ in CASES])
def test_default_config_shows_the_schema_default(
    section: str, key: str, field: fields.Field[Any]
) -> None:
    """Every setting is in config_default.py: set to the schema's default, or (a setting off
    by default) as a commented example."""
    written = tomllib.loads(DEFAULT_CONFIG_TEXT).get(section, {})
    default = schema_default(field)
    if key in written:
        assert written[key] == default, f"[{section}] {key} = {written[key]!r}, schema: {default!r}"
    else:
        assert key in commented_keys(DEFAULT_CONFIG_TEXT).get(section, set()), (
            f"[{section}] {key} is not in config_default.py"
        )
        assert default in (None, [], {}), f"[{section}] {key}: commented out, default {default!r}"


@pytest.mark.parametrize(
    "dataclass_type,schema",
    [
        (sections.SecurityConfig, sections.SecuritySchema),
        (sections.StorageConfig, sections.StorageSchema),
        (sections.ResourcesConfig, sections.ResourcesSchema),
        (sections.ResilienceConfig, sections.ResilienceSchema),
        (sections.TracingConfig, sections.TracingSchema),
    ],
)
def test_section_dataclasses_take_the_schema_defaults(
    dataclass_type: type[Any], schema: type[Schema]
) -> None:
    """A section built with no arguments equals the schema's load of an empty table."""
    assert dataclass_type() == dataclass_type(**schema().load({}))


def test_config_defaults_are_the_loaded_empty_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Config()` (no file) and an empty lollms.toml agree on every server setting."""
    for name in ("LOLLMS_HOST", "LOLLMS_PORT", "LOLLMS_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    built, loaded = Config(), parse_config({})
    for name in ("host", "port", "max_body_bytes", "limits", "request_timeout_s"):
        assert getattr(built, name) == getattr(loaded, name), name
    assert (built.drain_timeout_s, built.log_level) == (loaded.drain_timeout_s, loaded.log_level)
    assert built.security == loaded.security and built.resources == loaded.resources
    assert built.functions.max_steps == loaded.functions.max_steps
    assert RequestLimits() == loaded.limits  # the limits' own defaults are the schema's too
    assert SERVER_DEFAULTS["port"] == loaded.port
