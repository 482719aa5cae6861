"""The whole effective configuration as plain data, every section, secrets masked
(what `lollms-server config show` prints)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from marshmallow import RAISE, ValidationError

from .bindings import mask_secrets
from .config import Config, InstanceConfig
from .masking import mask_text
from .plugins import Plugins

#: Binding settings that are secrets whatever their value (a table of them is masked whole).
SECRET_SETTINGS = frozenset({"api_key", "headers"})
#: Settings whose `<name>_env` variable, when set, gives the value in use.
ENV_VALUES = (("storage", "url"), ("security", "rate_limit_storage"))
SECTIONS = ("functions", "security", "resources", "resilience", "storage", "tracing")


def effective_config(config: Config, plugins: Plugins | None = None) -> dict[str, Any]:
    """Every section of `config` as JSON-ready data: binding secrets masked, and every URL's
    credentials masked (`masking.mask_text`) wherever it appears. With `plugins`, each
    instance's settings are its binding type's whole settings, defaults included."""
    config = dataclasses.replace(
        config,
        bindings={
            name: dataclasses.replace(spec, settings=_settings(spec, plugins))
            for name, spec in config.bindings.items()
        },
    )
    data = _plain(dataclasses.asdict(config))
    path, bindings = data.pop("path"), data.pop("bindings")
    defaults, routes = data.pop("defaults"), data.pop("routes")
    personalities = {
        "folders": data.pop("personality_folders"),
        "examples": data.pop("personality_examples"),
    }
    sections = {name: data.pop(name) for name in SECTIONS}
    for section, key in ENV_VALUES:
        table = sections[section]
        variable = table.get(f"{key}_env")
        if variable and (value := os.environ.get(variable, "").strip()):
            table[key] = mask_text(value)  # what serve uses: the variable's, credentials masked
    return {
        "config_file": path,
        "server": data,  # what is left: the [server] keys and the request limits
        "bindings": {name: _instance(spec) for name, spec in bindings.items()},
        "defaults": defaults,
        "routes": routes,
        "personalities": personalities,
        **sections,
    }


def _settings(spec: InstanceConfig, plugins: Plugins | None) -> dict[str, Any]:
    """An instance's settings as its binding type loads them (what the config gives when the
    type is not installed, or the settings do not load: `serve` would say why)."""
    cls = plugins.binding_classes.get(spec.type) if plugins is not None else None
    if cls is None:
        return dict(spec.settings)
    try:
        loaded = cls.ConfigSchema().load(spec.settings, unknown=RAISE)
    except ValidationError:
        return dict(spec.settings)
    if dataclasses.is_dataclass(loaded) and not isinstance(loaded, type):
        return dataclasses.asdict(loaded)
    return dict(loaded) if isinstance(loaded, Mapping) else dict(spec.settings)


def _instance(spec: dict[str, Any]) -> dict[str, Any]:
    """One instance: its core keys, then its type's settings, secrets masked."""
    settings = spec.pop("settings")
    spec.pop("name")
    whole = {k: "***" if k in SECRET_SETTINGS and v else v for k, v in settings.items()}
    return {**spec, **mask_secrets(whole, SECRET_SETTINGS)}


def _plain(value: Any) -> Any:
    """JSON-ready: paths as text, tuples as lists, every string's URLs masked."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return mask_text(value)
    return value
