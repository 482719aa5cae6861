"""Model folders and single-file checkpoints: names, families, capabilities, memory estimates.

Reads JSON configs and safetensors headers only (never torch), so listing models is cheap.
A model is a diffusers folder (it has `model_index.json`) or a `.safetensors` checkpoint, found
directly in a models folder or one folder below it; its name is its path relative to the models
folder (without the suffix for files), with `/` between parts.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .headers import (
    Weights,
    optional_json,
    read_json,
    safetensors_header,
    safetensors_weights,
    sum_weights,
)

log = logging.getLogger(__name__)

IMAGE = frozenset({"tti", "i2i", "inpaint"})
SINGLE_FILE_SUFFIXES = (".safetensors", ".sft")
#: Folders holding adapters of models (adapters.py), not models.
ADAPTER_FOLDERS = ("loras", "controlnets", "ipadapters")
SETTING_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
WEIGHT_FILE = re.compile(
    r"^(?P<stem>[^.]+?)(?:-\d{5}-of-\d{5})?(?:\.(?P<variant>[A-Za-z0-9_]+))?"
    r"\.(?P<ext>safetensors|bin)$"
)
#: Pipeline classes we know: family and what they can do (generation types plus the workflows
#: `inpaint` and `v2v`, video-to-video).
PIPELINES: dict[str, tuple[str, frozenset[str]]] = {
    "StableDiffusionPipeline": ("SD 1.x", IMAGE),
    "StableDiffusionUpscalePipeline": ("SD x4 upscaler", frozenset({"i2i"})),
    "StableDiffusionImg2ImgPipeline": ("SD 1.x", IMAGE),
    "StableDiffusionInpaintPipeline": ("SD 1.x", frozenset({"i2i", "inpaint"})),
    "StableDiffusionXLPipeline": ("SDXL", IMAGE),
    "StableDiffusionXLImg2ImgPipeline": ("SDXL", frozenset({"i2i"})),
    "StableDiffusionXLInpaintPipeline": ("SDXL", frozenset({"i2i", "inpaint"})),
    "StableDiffusion3Pipeline": ("SD 3", IMAGE),
    "FluxPipeline": ("Flux", IMAGE),
    "PixArtAlphaPipeline": ("PixArt-alpha", frozenset({"tti"})),
    "PixArtSigmaPipeline": ("PixArt-sigma", frozenset({"tti"})),
    "LatentConsistencyModelPipeline": ("LCM", frozenset({"tti", "i2i"})),
    "AnimateDiffPipeline": ("AnimateDiff", frozenset({"ttv", "v2v"})),
    "AnimateDiffSDXLPipeline": ("AnimateDiff SDXL", frozenset({"ttv"})),
    "TextToVideoSDPipeline": ("ModelScope T2V", frozenset({"ttv"})),
    "CogVideoXPipeline": ("CogVideoX", frozenset({"ttv"})),
    "LTXPipeline": ("LTX-Video", frozenset({"ttv"})),
    "WanPipeline": ("Wan", frozenset({"ttv"})),
    "HunyuanVideoPipeline": ("HunyuanVideo", frozenset({"ttv"})),
    "AudioLDMPipeline": ("AudioLDM", frozenset({"ttm"})),
    "AudioLDM2Pipeline": ("AudioLDM 2", frozenset({"ttm"})),
    "StableAudioPipeline": ("Stable Audio", frozenset({"ttm"})),
    "MusicLDMPipeline": ("MusicLDM", frozenset({"ttm"})),
}
#: The diffusers pipeline class that loads a single-file checkpoint of each family.
SINGLE_FILE_PIPELINES = {
    "SD 1.x": "StableDiffusionPipeline",
    "SD 2.x": "StableDiffusionPipeline",
    "SDXL": "StableDiffusionXLPipeline",
    "SDXL refiner": "StableDiffusionXLImg2ImgPipeline",
    "SD 3": "StableDiffusion3Pipeline",
    "Flux": "FluxPipeline",
}
#: Transformer classes of the families whose single files may hold the transformer alone.
TRANSFORMERS = {"SD 3": "SD3Transformer2DModel", "Flux": "FluxTransformer2DModel"}
VAE_PREFIXES = ("first_stage_model.", "vae.")


@dataclass(frozen=True)
class ModelEntry:
    """One model found on disk."""

    name: str
    path: Path
    single_file: bool
    pipeline_class: str
    family: str
    capabilities: frozenset[str]
    weights: Weights = field(default_factory=Weights)
    variant: str | None = None
    components: tuple[str, ...] = ()
    error: str | None = None

    @property
    def stored_dtype(self) -> str | None:
        """The float type the weights are stored in (`mixed` when several)."""
        floats = {d for d in self.weights.dtypes if d.startswith(("F", "BF"))}
        if not floats:
            return None
        return floats.pop() if len(floats) == 1 else "mixed"

    @property
    def needs_mask(self) -> bool:
        """An inpainting-only model: image-to-image only with a mask."""
        return "inpaint" in self.capabilities and "tti" not in self.capabilities

    def memory_bytes(self, dtype: str) -> int | None:
        """Estimated bytes of weights once loaded in `dtype` (fp32/fp16/bf16)."""
        if not self.weights.parameters:
            return None
        return self.weights.parameters * SETTING_BYTES.get(dtype, 4)

    def details(self) -> dict[str, Any]:
        """What list_models shows beyond ModelInfo's own fields."""
        found: dict[str, Any] = {
            "pipeline": self.pipeline_class,
            "format": "single-file" if self.single_file else "diffusers",
            "stored_dtype": self.stored_dtype,
            "parameters_exact": self.weights.exact,
        }
        if self.variant:
            found["variant"] = self.variant
        if self.components:
            found["components"] = list(self.components)
        if self.error:
            found["error"] = self.error
        return found


class Catalog:
    """Scans models folders, re-reading a model only when its files' times change."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, Path], tuple[tuple[int, ...], ModelEntry]] = {}
        self._lock = threading.Lock()

    def scan(self, folders: Iterable[Path]) -> dict[str, ModelEntry]:
        """Every model under `folders`, by name; the first folder wins a name clash."""
        with self._lock:  # scans run in worker threads, possibly several at once
            return self._scan(folders)

    def _scan(self, folders: Iterable[Path]) -> dict[str, ModelEntry]:
        found: dict[str, ModelEntry] = {}
        seen: set[tuple[str, Path]] = set()
        for root in folders:
            if not root.is_dir():
                continue
            for name, path in _candidates(root):
                if name in found:
                    log.warning("model %s in %s hidden by %s", name, path, found[name].path)
                    continue
                seen.add(key := (name, path))
                stamp = _stamp(path)
                cached = self._cache.get(key)
                if cached is None or cached[0] != stamp:
                    cached = (stamp, describe(path, name))
                    self._cache[key] = cached
                found[name] = cached[1]
        for key in set(self._cache) - seen:
            del self._cache[key]
        return found


def scan(folders: Iterable[Path]) -> dict[str, ModelEntry]:
    """Every model under `folders`, by name (no cache)."""
    return Catalog().scan(folders)


def _stamp(path: Path) -> tuple[int, ...]:
    """Modification times and sizes of a model's file or folder and its direct children."""
    try:
        paths = [path, *(path.iterdir() if path.is_dir() else ())]
        stats = [p.stat() for p in paths]
    except OSError:
        return ()
    return tuple(v for st in stats for v in (st.st_mtime_ns, st.st_size))


def _candidates(root: Path) -> Iterable[tuple[str, Path]]:
    for child in _visible(root):
        if child.is_dir() and (child / "model_index.json").is_file():
            yield child.name, child
        elif child.is_dir() and child.name not in ADAPTER_FOLDERS:
            for grandchild in _visible(child):
                if grandchild.is_dir() and (grandchild / "model_index.json").is_file():
                    yield f"{child.name}/{grandchild.name}", grandchild
                elif _is_single_file(grandchild):
                    yield f"{child.name}/{grandchild.stem}", grandchild
        elif _is_single_file(child):
            yield child.stem, child


def _visible(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        log.warning("cannot read %s: %s", folder, exc)
        return []


def _is_single_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SINGLE_FILE_SUFFIXES


def describe(path: Path, name: str) -> ModelEntry:
    """Describe a model folder or single file; an unreadable one is kept with its error."""
    try:
        return describe_file(path, name) if path.is_file() else describe_folder(path, name)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return ModelEntry(name, path, path.is_file(), "", "unknown", frozenset(), error=str(exc))


def describe_folder(path: Path, name: str) -> ModelEntry:
    """A diffusers folder: its pipeline class from model_index.json, weights from headers."""
    index = read_json(path / "model_index.json")
    pipeline_class = str(index.get("_class_name", ""))
    if not pipeline_class:
        raise ValueError("model_index.json has no _class_name")
    components = tuple(
        key
        for key, value in index.items()
        if not key.startswith("_") and isinstance(value, list) and value and value[0] is not None
    )
    family, capabilities = classify(pipeline_class)
    unet = optional_json(path / "unet" / "config.json")
    if family == "SD 1.x" and unet.get("cross_attention_dim") == 1024:
        family = "SD 2.x"
    if "tti" in capabilities and unet.get("in_channels") == 9:
        capabilities = frozenset({"i2i", "inpaint"})  # an inpainting UNet needs a mask
    totals: list[Weights] = []
    variants: set[str | None] = set()
    for component in components:
        weights, variant = component_weights(path / component)
        if weights.size_bytes:
            totals.append(weights)
            variants.add(variant)
    variant = variants.pop() if len(variants) == 1 else None
    return ModelEntry(
        name,
        path,
        False,
        pipeline_class,
        family,
        capabilities,
        sum_weights(totals),
        variant,
        components,
    )


def classify(pipeline_class: str) -> tuple[str, frozenset[str]]:
    """Family and capabilities of a pipeline class (by name; unknown ones by name parts)."""
    known = PIPELINES.get(pipeline_class)
    if known:
        return known
    family = pipeline_class.removesuffix("Pipeline") or pipeline_class
    if "Inpaint" in pipeline_class:
        return family, frozenset({"i2i", "inpaint"})
    if "Img2Img" in pipeline_class:
        return family, frozenset({"i2i"})
    if any(word in pipeline_class for word in ("Video", "AnimateDiff")):
        return family, frozenset({"ttv"})
    if any(word in pipeline_class for word in ("Audio", "Music")):
        return family, frozenset({"ttm"})
    return family, frozenset({"tti"})


def component_weights(folder: Path) -> tuple[Weights, str | None]:
    """Weights of one component folder: the non-variant set when there is one."""
    groups: dict[tuple[str | None, str], list[Path]] = {}
    for file in _visible(folder) if folder.is_dir() else []:
        match = WEIGHT_FILE.match(file.name)
        if match and file.is_file():
            groups.setdefault((match["variant"], match["ext"]), []).append(file)
    if not groups:
        return Weights(), None
    # safetensors before .bin, no variant before a variant (what from_pretrained picks)
    variant, ext = min(groups, key=lambda key: (key[0] is not None, key[1] != "safetensors"))
    files = groups[(variant, ext)]
    if ext == "safetensors":
        return sum_weights(safetensors_weights(f) for f in files), variant
    size = sum(f.stat().st_size for f in files)
    return Weights(size, size // 4, frozenset({"F32"}), exact=False), variant


def describe_file(path: Path, name: str) -> ModelEntry:
    """A single-file checkpoint: its family from the tensor names in the header."""
    header = safetensors_header(path)
    weights = safetensors_weights(path, header)
    family, capabilities = single_file_family(header)
    pipeline_class = SINGLE_FILE_PIPELINES.get(family, "")
    error = None if pipeline_class else "not a checkpoint diffusers can load as a single file"
    # a Flux / SD 3 file often holds the transformer alone: the rest comes from the configs folder
    alone = family in TRANSFORMERS and not any(k.startswith(VAE_PREFIXES) for k in header)
    components = ("transformer",) if alone else ()
    return ModelEntry(
        name, path, True, pipeline_class, family, capabilities, weights, None, components, error
    )


def single_file_hint(entry: ModelEntry) -> str:
    """What to configure so that a single-file checkpoint loads offline."""
    return (
        f"single-file {entry.name!r} ({entry.family}) needs the diffusers configs of its family: "
        f'set single_file_configs."{entry.family}" to a local diffusers folder of that family'
    )


def single_file_family(header: Mapping[str, Any]) -> tuple[str, frozenset[str]]:
    """Guess the family of an original (non-diffusers) checkpoint from its tensor names."""
    keys = [k for k in header if k != "__metadata__"]

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if has("conditioner.embedders.1"):
        family, capabilities = "SDXL", IMAGE
    elif has("conditioner.embedders.0"):
        family, capabilities = "SDXL refiner", frozenset({"i2i"})
    elif _sd3(has):
        family, capabilities = "SD 3", IMAGE
    elif _flux(has):
        family, capabilities = "Flux", IMAGE
    elif has("cond_stage_model.model.transformer"):
        family, capabilities = "SD 2.x", IMAGE
    elif has("model.diffusion_model.input_blocks"):
        family, capabilities = "SD 1.x", IMAGE
    else:
        return "unknown", frozenset()
    first = header.get("model.diffusion_model.input_blocks.0.0.weight")
    if isinstance(first, Mapping) and list(first.get("shape", []))[1:2] == [9]:
        capabilities = frozenset({"i2i", "inpaint"})
    return family, capabilities


def _sd3(has: Callable[[str], bool]) -> bool:
    """SD 3 tensor names: the original (`joint_blocks`) or diffusers' (a transformer alone)."""
    diffusers_names = has("context_embedder.") and has("pos_embed.proj.")
    return has("model.diffusion_model.joint_blocks") or has("joint_blocks.") or diffusers_names


def _flux(has: Callable[[str], bool]) -> bool:
    """Flux tensor names: the original (`double_blocks`) or diffusers' (a transformer alone)."""
    diffusers_names = has("context_embedder.") and has("single_transformer_blocks.")
    return has("double_blocks.") or has("model.diffusion_model.double_blocks") or diffusers_names
