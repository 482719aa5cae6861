"""Models in Ollama's shapes: tagged names, `details`, and the /api/tags, /api/ps, /api/show items.

What a binding's ModelInfo does not say is filled from `ModelInfo.details` when a binding puts
Ollama's own keys there (the ollama binding does: `format`, `families`, `parameter_size`,
`digest`, `modified_at`, `expires_at`, `size_vram`), else made up predictably: the digest is the
SHA-256 of the model name and `modified_at` the server's start time. A model the lifecycle
loaded has its `expires_at` from keep_alive (far in the future for a pinned model or
keep_alive -1) and, on a GPU, its size there as `size_vram`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from ... import health
from ...bindings import Binding, ModelInfo
from ...errors import ModelNotFound
from ...listing import gather_models, visible_bindings, visible_models
from ...registry import Registry, Target
from ...resources.lifecycle import Lifecycle
from ...resources.placement import CPU
from ...service.generation import listed_models

log = logging.getLogger(__name__)
LATEST = ":latest"
FOREVER = "9999-12-31T23:59:59Z"
CAPABILITY_NAMES = {"ttt": "completion", "vision": "vision", "embeddings": "embedding"}
CAPABILITY_NAMES["tools"] = "tools"


def now_rfc3339(at: float | None = None) -> str:
    """A UTC timestamp as Ollama writes them (`2024-01-01T12:00:00.000000Z`)."""
    moment = datetime.fromtimestamp(at, UTC) if at is not None else datetime.now(UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def strip_latest(name: str) -> str:
    """A client's model name without Ollama's default `:latest` tag."""
    return name.removesuffix(LATEST)


def tagged(name: str) -> str:
    """`name` with `:latest` added when its last path segment has no tag."""
    return name if ":" in name.rpartition("/")[2] else name + LATEST


def display_name(target: Target) -> str:
    """The Ollama-style name of a resolved target: `<instance>/<model>[:latest]`."""
    return tagged(target.ref)


def model_name(binding: Binding, model: ModelInfo) -> str:
    """The Ollama-style name of one listed model."""
    return tagged(f"{binding.instance_name}/{model.name}")


def _served(binding: Binding) -> bool:
    """True for the instances this face serves: text or embeddings."""
    return bool({"ttt", "embeddings"} & binding.capabilities)


async def all_models(registry: Registry) -> list[tuple[Binding, ModelInfo]]:
    """Models of every text or embeddings instance; failing instances are skipped and logged."""
    bindings = [b for b in registry if _served(b)]
    found: list[tuple[Binding, ModelInfo]] = []
    for item in await gather_models(bindings):
        if item.error is not None:
            log.warning("models of %s skipped: %s", item.name, item.error.message)
        found.extend((item.binding, model) for model in item.models)
    return found


async def find(target: Target) -> ModelInfo:
    """The listed model a target names (`:latest` or not); ModelNotFound otherwise."""
    binding = target.binding
    listed = await listed_models(binding, health.HEALTH_TIMEOUT_S)
    wanted = strip_latest(target.model)
    for model in listed:
        if strip_latest(model.name) == wanted:
            return model
    raise ModelNotFound(
        f"model '{display_name(target)}' not found",
        binding=binding.instance_name,
        param="model",
    )


def parameter_size(parameters: int | None) -> str:
    """Ollama's human parameter count: `135.0M`, `8.0B`; empty when unknown."""
    if not parameters:
        return ""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if parameters >= scale:
            return f"{parameters / scale:.1f}{unit}"
    return str(parameters)


def details(model: ModelInfo) -> dict[str, Any]:
    """Ollama's `details` object of a model."""
    extra = model.details
    family = model.family or _text(extra.get("family"))
    families = extra.get("families")
    if not (isinstance(families, list) and all(isinstance(f, str) for f in families)):
        families = [family] if family else []
    return {
        "parent_model": _text(extra.get("parent_model")),
        "format": _text(extra.get("format")),
        "family": family,
        "families": families,
        "parameter_size": _text(extra.get("parameter_size")) or parameter_size(model.parameters),
        "quantization_level": model.quantization or _text(extra.get("quantization_level")),
    }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _digest(binding: Binding, model: ModelInfo) -> str:
    given = model.details.get("digest")
    if isinstance(given, str) and given:
        return given
    return hashlib.sha256(f"{binding.instance_name}/{model.name}".encode()).hexdigest()


def _modified_at(model: ModelInfo, started_at: float) -> str:
    given = model.details.get("modified_at")
    return given if isinstance(given, str) and given else now_rfc3339(started_at)


def tag_entry(binding: Binding, model: ModelInfo, started_at: float) -> dict[str, Any]:
    """One item of `GET /api/tags`."""
    name = model_name(binding, model)
    return {
        "name": name,
        "model": name,
        "modified_at": _modified_at(model, started_at),
        "size": model.size_bytes or 0,
        "digest": _digest(binding, model),
        "details": details(model),
    }


def route_entry(name: str, started_at: float) -> dict[str, Any]:
    """One item of `GET /api/tags` for a `[routes]` alias (the server picks its target)."""
    tagged_name = tagged(name)
    return {
        "name": tagged_name,
        "model": tagged_name,
        "modified_at": now_rfc3339(started_at),
        "size": 0,
        "digest": hashlib.sha256(f"route:{name}".encode()).hexdigest(),
        "details": {"parent_model": "", "format": "", "family": "route", "families": ["route"],
                    "parameter_size": "", "quantization_level": ""},
    }  # fmt: skip


def unlisted_loaded(
    registry: Registry, listed: list[tuple[Binding, ModelInfo]], lifecycle: Lifecycle
) -> list[tuple[Binding, ModelInfo]]:
    """Models the lifecycle has loaded that their instance does not list (a file removed from
    its folder while the model runs, an instance whose listing failed): still loaded. Only
    those the caller may use, as every listing."""
    shown = {(binding.instance_name, model.name) for binding, model in listed}
    bindings = {b.instance_name: b for b in visible_bindings(registry) if _served(b)}
    return [
        (bindings[instance], info)
        for (instance, model), entry in lifecycle.loaded.items()
        if instance in bindings and (instance, model) not in shown
        for info in visible_models(
            bindings[instance], [ModelInfo(model, memory_bytes=entry.bytes, loaded=True)]
        )
    ]


def ps_entry(binding: Binding, model: ModelInfo, lifecycle: Lifecycle) -> dict[str, Any]:
    """One item of `GET /api/ps` (a loaded model), keep_alive's expiry from the lifecycle."""
    name = model_name(binding, model)
    expires = model.details.get("expires_at")
    vram = model.details.get("size_vram")
    loaded = lifecycle.loaded.get((binding.instance_name, model.name))
    if loaded is not None:
        unloads_at = lifecycle.unloads_at(loaded)
        expires = FOREVER if unloads_at is None else _wall_clock(unloads_at)
        vram = loaded.bytes if loaded.device != CPU else vram
    return {
        "name": name,
        "model": name,
        "size": model.memory_bytes or model.size_bytes or 0,
        "digest": _digest(binding, model),
        "details": details(model),
        "expires_at": expires if isinstance(expires, str) and expires else FOREVER,
        "size_vram": vram if isinstance(vram, int) else 0,
        # what one generation may use as loaded (llama.cpp: n_ctx over its slots), as Ollama's
        # ps gives num_ctx, not the model's trained context
        "context_length": binding.context_length(model.name) or model.context_length or 0,
    }


def _wall_clock(monotonic_at: float) -> str:
    """A `time.monotonic()` moment as an Ollama timestamp."""
    return now_rfc3339(time.time() + monotonic_at - time.monotonic())


def capabilities(binding: Binding, model: ModelInfo) -> list[str]:
    """Ollama capability names of a model (what both it and its binding can do)."""
    own = model.capabilities & binding.capabilities if model.capabilities else binding.capabilities
    return [name for ours, name in CAPABILITY_NAMES.items() if ours in own]


def show_entry(binding: Binding, model: ModelInfo, started_at: float) -> dict[str, Any]:
    """The answer of `POST /api/show`."""
    name = model_name(binding, model)
    described = details(model)
    family = described["family"] or "general"
    info: dict[str, Any] = {}
    if described["family"]:
        info["general.architecture"] = described["family"]
    if model.parameters:
        info["general.parameter_count"] = model.parameters
    if model.context_length:
        info[f"{family}.context_length"] = model.context_length
    modelfile = (
        f"# served by lollms-server: instance {binding.instance_name!r} "
        f"(binding type {binding.name})\nFROM {name}\n"
    )
    return {
        "license": "",
        "modelfile": modelfile,
        "parameters": "",
        "template": "",
        "details": described,
        "model_info": info,
        "capabilities": capabilities(binding, model),
        "modified_at": _modified_at(model, started_at),
    }
