"""LoRAs, ControlNets and IP-Adapters beside the models, their family read from the files.

In each models folder, `loras/` holds LoRA `.safetensors` files, `controlnets/` ControlNet
diffusers folders and `ipadapters/` IP-Adapter folders (`ip-adapter.safetensors` plus an
`image_encoder/` CLIP vision folder). A LoRA's family comes from its tensor names and the width
of its cross-attention (`attn2.to_k`) input: 768 SD 1.x, 1024 SD 2.x, 2048 SDXL (so is a second
text encoder, or a UNet block of several transformer layers); a ControlNet's from its config;
an IP-Adapter's from the width of its `to_k_ip` projections. An adapter fits a model of its
family whose UNet has the same cross-attention width. No torch is imported here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lollms_server.sdk import GenerationRequest, InvalidRequest

from .catalog import ModelEntry
from .headers import optional_json, safetensors_header

LORAS = "loras"
CONTROLNETS = "controlnets"
IPADAPTERS = "ipadapters"
IP_ADAPTER_WEIGHTS = "ip-adapter.safetensors"
#: Families whose pipelines take a (UNet) IP-Adapter through `load_ip_adapter`.
IP_ADAPTER_FAMILIES = frozenset({"SD 1.x", "SD 2.x", "SDXL"})
STYLE_ROLE = "style_reference"
#: Families whose LoRAs and ControlNets are told apart here (adapters of other families never fit).
LORA_FAMILIES = frozenset({"SD 1.x", "SD 2.x", "SDXL", "SD 3", "Flux"})
CONTROLNET_FAMILIES = frozenset({"SD 1.x", "SD 2.x", "SDXL"})
FAMILY_BY_WIDTH = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}
MAX_LORAS = 8
MAX_LORA_SCALE = 10.0
LORA_DOWN = ("lora_A", "lora_down", "lora.down")
CONTROL_ROLE = "controlnet_image"
DEEP_BLOCK = re.compile(r"transformer_blocks[._][1-9]")  # SD 1.x/2.x UNets have one per block


@dataclass(frozen=True)
class ControlChoice:
    """The ControlNet of a request: its folder, control image and strength over the steps."""

    name: str
    path: str
    image: bytes
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0


@dataclass(frozen=True)
class StyleChoice:
    """The IP-Adapter of a request: its folder, the style image and how strongly it counts."""

    name: str
    path: str
    image: bytes
    scale: float = 1.0


@dataclass(frozen=True)
class Adapter:
    """A LoRA file or a ControlNet folder, with the model family it was trained for."""

    name: str
    path: Path
    family: str
    width: int | None = None  # the cross-attention width it expects (None: unknown)
    error: str | None = None

    def fits(self, entry: ModelEntry, width: int | None) -> bool:
        """Whether it works with `entry` (whose UNet has cross-attention `width`)."""
        same_width = self.width is None or width is None or self.width == width
        return not self.error and self.family == entry.family and same_width

    def listed(self) -> dict[str, Any]:
        """What list_models shows of it."""
        return {"name": self.name, "family": self.family}


def model_width(entry: ModelEntry) -> int | None:
    """The cross-attention width of a diffusers folder's UNet (None when unknown)."""
    if entry.single_file:
        return None
    width = optional_json(entry.path / "unet" / "config.json").get("cross_attention_dim")
    return width if isinstance(width, int) else None


def workflows(entry: ModelEntry, upscale: bool) -> list[str]:
    """What a model takes: its generation types and workflows (`inpaint`, `v2v`, `loras`,
    `controlnet`, `style_reference`, `upscale`), for the model list."""
    found = set(entry.capabilities)
    image = bool(found & {"tti", "i2i"})
    found |= {"loras"} if image and entry.family in LORA_FAMILIES else set()
    found |= {"controlnet"} if image and entry.family in CONTROLNET_FAMILIES else set()
    found |= {STYLE_ROLE} if image and entry.family in IP_ADAPTER_FAMILIES else set()
    found |= {"upscale"} if upscale else set()
    return sorted(found)


def scan(folders: Iterable[Path], kind: str) -> dict[str, Adapter]:
    """The adapters of `kind` (`loras` or `controlnets`) under the folders, by name."""
    found: dict[str, Adapter] = {}
    for root in folders:
        folder = root / kind
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            name = path.stem if path.is_file() else path.name
            if kind == LORAS and path.suffix == ".safetensors" and name not in found:
                found[name] = _described(name, path, describe_lora)
            elif kind == CONTROLNETS and path.is_dir() and name not in found:
                found[name] = _described(name, path, describe_controlnet)
            elif kind == IPADAPTERS and path.is_dir() and name not in found:
                found[name] = _described(name, path, describe_ip_adapter)
    return found


def _described(name: str, path: Path, describe: Any) -> Adapter:
    try:
        family, width = describe(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Adapter(name, path, "unknown", error=str(exc))
    return Adapter(name, path, family, width)


def describe_lora(path: Path) -> tuple[str, int | None]:
    """Family and cross-attention width of a LoRA file, from its header."""
    header = safetensors_header(path)
    keys = [key for key in header if key != "__metadata__"]
    if not any("lora" in key.lower() for key in keys):
        raise ValueError(f"{path.name} holds no LoRA tensors")
    width = None
    for key in keys:
        if "attn2" in key and "to_k" in key and any(part in key for part in LORA_DOWN):
            shape = header[key].get("shape", [])
            width = int(shape[1]) if len(shape) == 2 else None
            break
    if any("single_transformer_blocks" in k or "single_blocks" in k for k in keys):
        return "Flux", width
    if any(k.startswith(("transformer.", "lora_transformer_")) for k in keys):
        return "SD 3", width
    second_encoder = any("text_encoder_2" in k or k.startswith("lora_te2_") for k in keys)
    if width == 2048 or second_encoder or any(DEEP_BLOCK.search(k) for k in keys):
        return "SDXL", width
    return FAMILY_BY_WIDTH.get(width or 768, "SD 1.x"), width


def describe_controlnet(path: Path) -> tuple[str, int | None]:
    """Family and cross-attention width of a ControlNet diffusers folder, from its config."""
    config = optional_json(path / "config.json")
    if config.get("_class_name") != "ControlNetModel":
        raise ValueError(f"{path.name} is not a ControlNetModel folder (config.json)")
    width = config.get("cross_attention_dim")
    width = width if isinstance(width, int) else None
    if config.get("addition_embed_type") == "text_time":
        return "SDXL", width
    return FAMILY_BY_WIDTH.get(width or 768, "SD 1.x"), width


def describe_ip_adapter(path: Path) -> tuple[str, int | None]:
    """Family and cross-attention width of an IP-Adapter folder, from its weights' header."""
    if not (path / "image_encoder" / "config.json").is_file():
        raise ValueError(f"{path.name} has no image_encoder/ folder")
    header = safetensors_header(path / IP_ADAPTER_WEIGHTS)
    widths = [
        info["shape"][1]
        for key, info in header.items()
        if key.endswith("to_k_ip.weight") and len(info.get("shape", [])) == 2
    ]
    if not widths:
        raise ValueError(f"{IP_ADAPTER_WEIGHTS} of {path.name} holds no ip_adapter projections")
    return FAMILY_BY_WIDTH.get(int(widths[0]), "SD 1.x"), int(widths[0])


def pick_loras(
    value: Any, found: Mapping[str, Adapter], entry: ModelEntry, width: int | None
) -> tuple[tuple[str, str, float], ...]:
    """`parameters.loras` checked against the LoRAs found: (name, path, scale) each."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_LORAS:
        raise InvalidRequest(
            f"loras: a list of at most {MAX_LORAS} {{name, scale}} objects", param="loras"
        )
    picked: dict[str, tuple[str, str, float]] = {}
    for index, item in enumerate(value):
        item = {"name": item} if isinstance(item, str) else item
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise InvalidRequest(f"loras[{index}]: needs a name", param="loras")
        extra = set(item) - {"name", "scale"}
        if extra:
            raise InvalidRequest(f"loras[{index}]: unknown keys {sorted(extra)}", param="loras")
        name, scale = item["name"], item.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            raise InvalidRequest(f"loras[{index}].scale: got {scale!r}", param="loras")
        if not -MAX_LORA_SCALE <= scale <= MAX_LORA_SCALE or name in picked:
            raise InvalidRequest(
                f"loras[{index}]: {name!r} twice, or scale {scale} outside "
                f"-{MAX_LORA_SCALE}..{MAX_LORA_SCALE}",
                param="loras",
            )
        picked[name] = (name, str(_fitting(name, found, entry, width).path), float(scale))
    return tuple(picked.values())


def pick_controlnet(
    request: GenerationRequest, found: Mapping[str, Adapter], entry: ModelEntry, width: int | None
) -> ControlChoice | None:
    """`parameters.controlnet` and the `controlnet_image` input, checked together."""
    value = request.parameters.get("controlnet")
    images = request.inputs_with_role(CONTROL_ROLE)
    if value is None and not images:
        return None
    if len(images) != 1 or images[0].type != "image":
        raise InvalidRequest(
            f"controlnet needs exactly one image input with role {CONTROL_ROLE}; got {len(images)}",
            param="input_data",
        )
    if not isinstance(value, Mapping) or not isinstance(value.get("model"), str):
        known = ", ".join(sorted(found)) or "none"
        raise InvalidRequest(
            f"a {CONTROL_ROLE} input needs parameters.controlnet = {{model, conditioning_scale, "
            f"start, end}}; ControlNets: {known}",
            param="controlnet",
        )
    extra = set(value) - {"model", "conditioning_scale", "start", "end"}
    numbers = [value.get(key) for key in ("conditioning_scale", "start", "end")]
    if extra or any(isinstance(n, bool) or not isinstance(n, int | float | None) for n in numbers):
        raise InvalidRequest(
            f"controlnet: unknown keys {sorted(extra)} or a non-number", param="controlnet"
        )
    scale, start, end = (float(n) if n is not None else None for n in numbers)
    start, end = start if start is not None else 0.0, end if end is not None else 1.0
    if not 0.0 <= start < end <= 1.0 or not 0.0 <= (scale or 0.0) <= 5.0:
        raise InvalidRequest(
            f"controlnet: start {start} and end {end} must satisfy 0 <= start < end <= 1, "
            f"conditioning_scale 0-5",
            param="controlnet",
        )
    adapter = _fitting(value["model"], found, entry, width, "ControlNet", "controlnet")
    chosen = 1.0 if scale is None else scale
    return ControlChoice(adapter.name, str(adapter.path), images[0].data, chosen, start, end)


def _fitting(
    name: str,
    found: Mapping[str, Adapter],
    entry: ModelEntry,
    width: int | None,
    kind: str = "LoRA",
    param: str = "loras",
) -> Adapter:
    adapter = found.get(name)
    if adapter is None:
        known = ", ".join(sorted(found)) or "none"
        raise InvalidRequest(f"no {kind} {name!r}; {kind}s: {known}", param=param)
    if adapter.error:
        raise InvalidRequest(f"{kind} {name!r} cannot be used: {adapter.error}", param=param)
    if not adapter.fits(entry, width):
        raise InvalidRequest(
            f"{kind} {name!r} ({adapter.family}, width {adapter.width}) does not fit model "
            f"{entry.name!r} ({entry.family}, width {width})",
            param=param,
        )
    return adapter


def pick_style(
    request: GenerationRequest, found: Mapping[str, Adapter], entry: ModelEntry, width: int | None
) -> StyleChoice | None:
    """The `style_reference` input and `parameters.ip_adapter` ({model, scale}), checked; the
    model may be left out when exactly one IP-Adapter fits."""
    value = request.parameters.get("ip_adapter")
    images = request.inputs_with_role(STYLE_ROLE)
    if value is None and not images:
        return None
    if len(images) != 1 or images[0].type != "image":
        raise InvalidRequest(
            f"ip_adapter needs exactly one image input with role {STYLE_ROLE}; got {len(images)}",
            param="input_data",
        )
    if entry.family not in IP_ADAPTER_FAMILIES:
        raise InvalidRequest(
            f"{STYLE_ROLE}: model {entry.name!r} ({entry.family}) takes no IP-Adapter; "
            f"families that do: {', '.join(sorted(IP_ADAPTER_FAMILIES))}",
            param="input_data",
        )
    value = {} if value is None else value
    if not isinstance(value, Mapping) or set(value) - {"model", "scale"}:
        raise InvalidRequest("ip_adapter: an object {model, scale}", param="ip_adapter")
    scale = value.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 <= scale <= 2:
        raise InvalidRequest(f"ip_adapter.scale: got {scale!r}; allowed 0-2", param="ip_adapter")
    name = value.get("model")
    if name is None:
        fitting = sorted(n for n, a in found.items() if a.fits(entry, width))
        if len(fitting) != 1:
            raise InvalidRequest(
                f"{STYLE_ROLE}: {len(fitting)} IP-Adapters fit model {entry.name!r} "
                f"({', '.join(fitting) or 'none'}): name one in parameters.ip_adapter.model",
                param="ip_adapter",
            )
        name = fitting[0]
    if not isinstance(name, str):
        raise InvalidRequest("ip_adapter.model: a name", param="ip_adapter")
    adapter = _fitting(name, found, entry, width, "IP-Adapter", "ip_adapter")
    return StyleChoice(adapter.name, str(adapter.path), images[0].data, float(scale))
