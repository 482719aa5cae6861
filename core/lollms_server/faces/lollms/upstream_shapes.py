"""Upstream lollms_server's listing shapes (api/models.py there), next to our richer fields."""

from __future__ import annotations

import functools
import importlib.metadata
import re
from typing import Any

from ...bindings import Binding, ModelInfo
from ...httpkit.convert import model_dict
from ...plugins import PluginInfo
from ...service.personalities import Personality

AUDIO_TYPES = frozenset({"tts", "stt", "audio2audio"})
# upstream's model_type values, in the order a model's capabilities are tried
MODEL_TYPES = ("ttt", "tti", "tts", "stt", "ttv", "ttm")
REQUIREMENT_NAME = re.compile(r"^[A-Za-z0-9._-]+")


def parameter_size(parameters: int | None) -> str | None:
    """135000000 -> '135M', 7_000_000_000 -> '7B' (upstream's `parameter_size` string)."""
    if not parameters:
        return None
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if parameters >= scale:
            return f"{parameters / scale:.3g}{unit}"
    return str(parameters)


def model_type(capabilities: frozenset[str]) -> str:
    """Upstream's `model_type`: `vlm` for a text model that sees, else its first modality."""
    if "ttt" in capabilities and "vision" in capabilities:
        return "vlm"
    return next((t for t in MODEL_TYPES if t in capabilities), "generic")


def available_model(model: ModelInfo, instance: str) -> dict[str, Any]:
    """A `list_available_models` item: upstream's ModelInfo fields plus ours."""
    details = dict(model.details)
    return {
        **model_dict(model, instance),
        "size": model.size_bytes,
        "modified_at": details.get("modified_at"),
        "quantization_level": model.quantization,
        "format": details.get("format"),
        "families": [model.family] if model.family else None,
        "parameter_size": parameter_size(model.parameters),
        "context_size": model.context_length,
        "max_output_tokens": details.get("max_output_tokens"),
        "template": details.get("template"),
        "license": details.get("license"),
        "homepage": details.get("homepage"),
        "supports_vision": "vision" in model.capabilities,
        "supports_audio": bool(AUDIO_TYPES & model.capabilities),
    }


def model_info(model: ModelInfo, binding: Binding) -> dict[str, Any]:
    """A `get_model_info` answer: upstream's GetModelInfoResponse fields plus ours (its
    `details` also holds format, family, parameter size and quantization, as upstream's)."""
    listed = available_model(model, binding.instance_name)
    summary = ("format", "family", "families", "parameter_size", "quantization_level")
    return {
        **listed,
        "details": {**listed["details"], **{k: listed[k] for k in summary if listed[k]}},
        "binding_instance_name": binding.instance_name,
        "model_name": model.name,
        "model_type": model_type(model.capabilities),
        "supports_streaming": "stream" in binding.capabilities,
    }


def binding_type(name: str, cls: type[Binding], owner: PluginInfo | None) -> dict[str, Any]:
    """A `list_bindings` type: upstream's BindingTypeInfo fields plus ours."""
    author, requirements = _distribution_facts(owner.distribution if owner else None)
    return {
        "type_name": name,
        "display_name": cls.title,
        "title": cls.title,
        "version": owner.version if owner else None,
        "author": author,
        "description": cls.description,
        "requirements": requirements,
        "supports_streaming": "stream" in cls.capabilities,
        "capabilities": sorted(cls.capabilities),
        "plugin": owner.name if owner else None,
        "settings": sorted(cls.ConfigSchema().fields),
    }


@functools.cache
def _distribution_facts(distribution: str | None) -> tuple[str | None, list[str]]:
    """Author and required package names of an installed distribution (read once)."""
    if not distribution:
        return None, []
    try:
        meta = importlib.metadata.metadata(distribution)
        requires = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return None, []
    author = meta["Author"] or meta["Author-email"]
    names = []
    for requirement in requires:
        match = REQUIREMENT_NAME.match(requirement)
        if match and "extra ==" not in requirement:
            names.append(match.group(0))
    return author, names


def binding_instance(binding: Binding, default_model: str | None) -> dict[str, Any]:
    """A `list_bindings` / `list_active_bindings` instance: upstream's BindingInstanceInfo
    (type, binding_instance_name and the masked settings at the top) plus ours."""
    settings = binding.public_settings()
    return {
        **settings,
        "type": binding.name,
        "binding_instance_name": binding.instance_name,
        "default_model": default_model,
        "settings": settings,
    }


def personality(item: Personality) -> dict[str, Any]:
    """A `list_personalities` item: upstream's PersonalityInfo fields plus ours."""
    return {
        **item.to_dict(),
        "is_scripted": item.workflow is not None,
        "path": item.source,
        "icon": item.icon.name if item.icon else None,
    }
