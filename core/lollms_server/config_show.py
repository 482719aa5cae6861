"""The whole effective configuration as plain data, every section, secrets masked
(what `lollms-server config show` prints)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .bindings import mask_secrets
from .config import Config
from .masking import mask_text

#: Binding settings that are secrets whatever their value (a table of them is masked whole).
SECRET_SETTINGS = frozenset({"api_key", "headers"})
SECTIONS = ("functions", "security", "resources", "resilience", "storage")


def effective_config(config: Config) -> dict[str, Any]:
    """Every section of `config` as JSON-ready data: binding secrets masked, and every URL's
    credentials masked (`masking.mask_text`) wherever it appears."""
    data = _plain(dataclasses.asdict(config))
    path, bindings = data.pop("path"), data.pop("bindings")
    defaults, routes = data.pop("defaults"), data.pop("routes")
    personalities = {
        "folders": data.pop("personality_folders"),
        "examples": data.pop("personality_examples"),
    }
    sections = {name: data.pop(name) for name in SECTIONS}
    return {
        "config_file": path,
        "server": data,  # what is left: the [server] keys and the request limits
        "bindings": {name: _instance(spec) for name, spec in bindings.items()},
        "defaults": defaults,
        "routes": routes,
        "personalities": personalities,
        **sections,
    }


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
