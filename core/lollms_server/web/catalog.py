"""What the pages show about instances and models, gathered from the bindings themselves.

Every number or label comes from `Binding.list_models()` (GGUF headers, diffusers configs,
backend listings) through the API's `model_dict`; nothing is hard-coded for a model. A binding
that fails to list its models is shown with its error, never as an empty list.
"""

from __future__ import annotations

import asyncio
import importlib.metadata as metadata
from typing import Any

from ..bindings import FEATURES, GENERATION_TYPES, Binding, Health, ModelInfo
from ..errors import Forbidden, LollmsError
from ..health import HEALTH_TIMEOUT_S
from ..httpkit.convert import model_dict
from ..listing import InstanceModels
from ..plugins import Plugins
from ..registry import Registry
from ..security.principal import current

GENERATION_LABELS = {
    "ttt": "Text",
    "tti": "Text to image",
    "i2i": "Image to image",
    "tts": "Text to speech",
    "stt": "Speech to text",
    "ttv": "Text to video",
    "ttm": "Text to music",
    "audio2audio": "Audio to audio",
}


def generation_types(model: ModelInfo, binding: Binding) -> list[str]:
    """What a model can generate: what it reports, else what its binding declares."""
    reported = [t for t in GENERATION_TYPES if t in model.capabilities]
    if reported:
        return [t for t in reported if t in binding.capabilities] or reported
    return [t for t in GENERATION_TYPES if t in binding.capabilities]


def model_rows(listings: list[InstanceModels]) -> list[dict[str, Any]]:
    """One row per (instance, model): the public model description plus what the page needs."""
    served_by: dict[str, set[str]] = {}
    for listing in listings:
        for model in listing.models:
            served_by.setdefault(model.name, set()).add(listing.binding.name)
    rows = []
    for listing in listings:
        for model in listing.models:
            row = model_dict(model, listing.name)
            reported = model.details.get("compatible_bindings") or []
            row["binding_type"] = listing.binding.name
            row["generation_types"] = generation_types(model, listing.binding)
            row["features"] = [c for c in row["capabilities"] if c in FEATURES]
            row["compatible"] = sorted(served_by[model.name] | set(reported))
            row["can_load"] = listing.binding.supports("load_unload")
            rows.append(row)
    return rows


def choices(listings: list[InstanceModels], *types: str) -> list[dict[str, Any]]:
    """Select options for a playground: instances able to do one of `types`, with their models."""
    groups = []
    for listing in listings:
        if not any(t in listing.binding.capabilities for t in types):
            continue
        names = [
            m.name
            for m in listing.models
            if any(t in generation_types(m, listing.binding) for t in types)
        ]
        groups.append({"instance": listing.name, "models": names, "error": listing.error})
    return groups


async def offers_default(
    registry: Registry, groups: list[dict[str, Any]], generation_type: str
) -> bool:
    """Whether a playground's model picker offers "default": not to a key whose allow-lists
    refuse the default target (it gets the first model it may use), unless it has no other."""
    principal = current()
    if principal is None or (principal.allowed_bindings, principal.allowed_models) == (None, None):
        return True
    if not any(group["models"] for group in groups):
        return True
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            await registry.resolve(generation_type, None, None)
    except Forbidden:
        return False
    except (LollmsError, TimeoutError):
        return True  # not the key's doing: sending says what is wrong
    return True


def binding_types(plugins: Plugins) -> list[dict[str, Any]]:
    """Every binding type the plugins registered, with its plugin's name, version and author."""
    rows = []
    for name, cls in sorted(plugins.binding_classes.items()):
        owner = plugins.plugin_of(name)
        rows.append(
            {
                "name": name,
                "title": cls.title,
                "description": cls.description,
                "capabilities": sorted(cls.capabilities),
                "plugin": owner.name if owner else None,
                "distribution": owner.distribution if owner else None,
                "version": owner.version if owner else None,
                "author": _author(owner.distribution if owner else None),
                "settings": sorted(cls.ConfigSchema().fields),
            }
        )
    return rows


def _author(distribution: str | None) -> str | None:
    if not distribution:
        return None
    try:
        meta = metadata.metadata(distribution)
    except metadata.PackageNotFoundError:
        return None
    for field in ("Author", "Author-email", "Maintainer", "Maintainer-email"):
        values = meta.get_all(field) or []
        if values:
            return str(values[0])
    return None


def instance_view(
    registry: Registry, binding: Binding, state: Health, listing: InstanceModels
) -> dict[str, Any]:
    """An instance as the bindings page shows it (settings masked)."""
    return {
        "name": binding.instance_name,
        "type": binding.name,
        "title": binding.title,
        "capabilities": sorted(binding.capabilities),
        "can_load": binding.supports("load_unload"),
        "default_model": registry.default_models.get(binding.instance_name),
        "settings": binding.public_settings(),
        "health": state,
        "models": [model_dict(m, binding.instance_name) for m in listing.models],
        "error": listing.error,
    }
