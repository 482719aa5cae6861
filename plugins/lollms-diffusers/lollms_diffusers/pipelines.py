"""The torch side: load a model into a pipeline, run a plan with it, free it.

Imported only inside the worker thread when the first model loads (never at registration), so
the server starts without importing torch. Every function here runs in the worker thread.
"""

from __future__ import annotations

import gc
import importlib.util
import inspect
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import diffusers
import torch
import transformers
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    AutoPipelineForText2Image,
    DiffusionPipeline,
)
from diffusers.loaders.single_file_utils import SingleFileComponentError

from lollms_server.sdk import BackendError, InvalidRequest, MissingDependency, Output

from . import control, encode, outputs, style, video_input
from .catalog import TRANSFORMERS, ModelEntry
from .plan import Plan, i2i_size, single_file_config
from .runner import Job
from .settings import DiffusersConfig

log = logging.getLogger(__name__)
Pipe = Any  # a diffusers pipeline (diffusers has no precise types for its pipelines)
diffusers.utils.logging.disable_progress_bar()  # a server logs; it draws no progress bars
transformers.utils.logging.disable_progress_bar()
TRUNCATED = "The following part of your input was truncated"


class PromptsStayOut(logging.Filter):
    """diffusers' truncation warning quotes the prompt's cut part: it is logged without it
    (prompts stay out of the logs unless `[security] audit_prompts` says otherwise)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite a truncation warning; let everything else through."""
        if str(record.msg).startswith(TRUNCATED):
            record.msg = "a prompt was cut to the text encoder's token limit; the rest was ignored"
            record.args = ()
        return True


for _handler in diffusers.utils.logging.get_logger().handlers:  # the library's own stderr one
    _handler.addFilter(PromptsStayOut())
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DERIVED = {
    "tti": AutoPipelineForText2Image,
    "i2i": AutoPipelineForImage2Image,
    "inpaint": AutoPipelineForInpainting,
}
COUNT_PARAMS = ("num_images_per_prompt", "num_videos_per_prompt", "num_waveforms_per_prompt")
#: Tasks whose diffusers pipelines make one output a call (AnimateDiff and most video
#: pipelines set num_videos_per_prompt = 1 whatever is passed): `n` of them is n calls.
ONE_A_CALL = ("ttv", "v2v")


@dataclass
class Loaded:
    """A model in memory: its base pipeline and the task pipelines sharing its weights."""

    entry: ModelEntry
    pipe: Pipe
    device: str
    dtype: str
    bytes_used: int
    derived: dict[str, Pipe] = field(default_factory=dict)
    loras: list[tuple[str, float]] = field(default_factory=list)  # configured: adapter, scale
    requested: set[str] = field(default_factory=set)  # per-request LoRAs loaded so far
    style: tuple[str, Pipe] | None = None  # the IP-Adapter loaded and the pipeline holding it


def resolve_device(setting: str) -> str:
    """`auto` -> cuda when available, else mps, else cpu; other values as given."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(setting: str, device: str) -> str:
    """`auto` -> fp16 on a GPU, fp32 on the CPU; other values as given."""
    if setting != "auto":
        return setting
    return "fp32" if device == "cpu" else "fp16"


def load(entry: ModelEntry, settings: DiffusersConfig) -> Loaded:
    """Load a model folder or single file with the instance's settings applied."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    kwargs: dict[str, Any] = {"dtype": DTYPES[dtype], "local_files_only": True}
    if entry.variant:
        kwargs["variant"] = entry.variant
    if not settings.safety_checker and "safety_checker" in entry.components:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        if entry.single_file:
            pipe = _from_single_file(entry, settings, kwargs)
        else:
            pipe = DiffusionPipeline.from_pretrained(str(entry.path), **kwargs)
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot load {entry.name!r}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    _scheduler(pipe, settings.scheduler)
    loras = _loras(pipe, entry, settings.loras)
    _place(pipe, device, settings)
    return Loaded(entry, pipe, device, dtype, pipeline_bytes(pipe), loras=loras)


def _from_single_file(entry: ModelEntry, settings: DiffusersConfig, kwargs: dict[str, Any]) -> Pipe:
    """A single-file checkpoint, its components configured by the family's folder (a
    transformer-only file takes every other component from that folder's weights)."""
    cls = getattr(diffusers, entry.pipeline_class)
    config = str(single_file_config(entry, settings))  # a local folder: never the Hub
    try:
        if entry.components == ("transformer",):
            model = getattr(diffusers, TRANSFORMERS[entry.family]).from_single_file(
                str(entry.path), config=config, subfolder="transformer", **kwargs
            )
            return cls.from_pretrained(config, transformer=model, **kwargs)
        return cls.from_single_file(str(entry.path), config=config, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, SingleFileComponentError) as exc:
        # tensors that do not fit the family's configs, or missing ones (torch's "Cannot copy
        # out of meta tensor", a RuntimeError, when a component is only partly in the file)
        raise BackendError(f"cannot load single-file {entry.name!r}: {exc}") from exc


def _scheduler(pipe: Pipe, name: str | None) -> None:
    if not name:
        return
    cls = getattr(diffusers, name, None)
    if not (inspect.isclass(cls) and issubclass(cls, diffusers.SchedulerMixin)):
        raise BackendError(f"scheduler {name!r} is not a diffusers scheduler class")
    scheduler: Any = cls  # a diffusers class: untyped for mypy (see pyproject's overrides)
    pipe.scheduler = scheduler.from_config(pipe.scheduler.config)


def _loras(pipe: Pipe, entry: ModelEntry, loras: list[dict[str, Any]]) -> list[tuple[str, float]]:
    names: list[str] = []
    weights: list[float] = []
    for index, lora in enumerate(loras):
        if lora["models"] and entry.name not in lora["models"]:
            continue
        if not hasattr(pipe, "load_lora_weights"):
            if lora["models"]:
                raise BackendError(f"{entry.name!r} ({entry.pipeline_class}) takes no LoRA")
            continue
        path = Path(lora["path"]).expanduser()
        if not path.exists():
            raise BackendError(f"LoRA {lora['path']!r} does not exist")
        name = f"lora{index}"
        _load_lora(pipe, path, name)
        names.append(name)
        weights.append(lora["scale"])
    if names:
        pipe.set_adapters(names, adapter_weights=weights)
    return list(zip(names, weights, strict=True))


def _load_lora(pipe: Pipe, path: Path, adapter: str) -> None:
    if importlib.util.find_spec("peft") is None:
        raise MissingDependency("LoRAs need peft: pip install peft")
    location = path if path.is_dir() else path.parent
    extra = {} if path.is_dir() else {"weight_name": path.name}
    pipe.load_lora_weights(str(location), adapter_name=adapter, local_files_only=True, **extra)


def _activate_loras(loaded: Loaded, plan: Plan) -> None:
    """The configured LoRAs plus the request's, at their scales (none: LoRAs off)."""
    if not loaded.loras and not loaded.requested and not plan.loras:
        return
    pipe = loaded.pipe
    names = [name for name, _ in loaded.loras]
    weights = [scale for _, scale in loaded.loras]
    for name, path, scale in plan.loras:
        adapter = "request_" + re.sub(r"\W", "_", name)
        if adapter not in loaded.requested:
            _load_lora(pipe, Path(path), adapter)
            loaded.requested.add(adapter)
        names.append(adapter)
        weights.append(scale)
    if names:
        pipe.enable_lora()
        pipe.set_adapters(names, adapter_weights=weights)
    else:
        pipe.disable_lora()


def _place(pipe: Pipe, device: str, settings: DiffusersConfig) -> None:
    offload = settings.cpu_offload
    if offload != "none" and device.startswith("cuda"):
        gpu = int(device.partition(":")[2] or 0)
        if offload == "model":
            pipe.enable_model_cpu_offload(gpu_id=gpu)
        else:
            pipe.enable_sequential_cpu_offload(gpu_id=gpu)
    else:
        if offload != "none":
            log.warning("cpu_offload=%s needs a CUDA device; running on %s", offload, device)
        pipe.to(device)
    if settings.attention_slicing and hasattr(pipe, "enable_attention_slicing"):
        pipe.enable_attention_slicing()
    vae: Any = getattr(pipe, "vae", None)
    if settings.vae_tiling and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()


def pipeline_bytes(pipe: Pipe) -> int:
    """Bytes of every parameter and buffer of the pipeline's torch modules."""
    total = 0
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            tensors = [*module.parameters(), *module.buffers()]
            total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def free(device: str) -> None:
    """Collect garbage and give cached accelerator memory back (after references are gone)."""
    gc.collect()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
    elif device == "mps" and torch.backends.mps.is_available():
        torch.mps.empty_cache()


def release(loaded: Loaded) -> None:
    """Drop a loaded model's hooks and task pipelines (its caller drops the rest)."""
    remove_hooks = getattr(loaded.pipe, "remove_all_hooks", None)
    if remove_hooks is not None:
        remove_hooks()
    loaded.derived.clear()


def task_pipeline(loaded: Loaded, task: str) -> Pipe:
    """The pipeline for a task: the base one, or an Auto pipeline sharing its components."""
    if task not in DERIVED or _fits(type(loaded.pipe).__name__, task):
        return loaded.pipe
    if task not in loaded.derived:
        try:
            derived = DERIVED[task].from_pipe(loaded.pipe)
        except (ValueError, KeyError) as exc:
            raise InvalidRequest(f"{loaded.entry.name!r} cannot do {task}: {exc}") from exc
        derived.set_progress_bar_config(disable=True)
        loaded.derived[task] = derived
    return loaded.derived[task]


def _fits(class_name: str, task: str) -> bool:
    """Whether a pipeline class does `task` itself (else an Auto pipeline is derived)."""
    if task == "inpaint":
        return "Inpaint" in class_name
    if task == "i2i":
        return "Img2Img" in class_name or "Upscale" in class_name
    return "Img2Img" not in class_name and "Inpaint" not in class_name


def run(loaded: Loaded, plan: Plan, job: Job[Any]) -> list[Output]:
    """Run a plan on a loaded model; progress and cancellation go through `job`."""
    if plan.n > 1 and plan.task in ONE_A_CALL:
        return [
            out for seed in plan.seeds() for out in run(loaded, replace(plan, n=1, seed=seed), job)
        ]
    if plan.controlnet is not None:
        pipe = control.controlled_pipeline(loaded, plan, DERIVED, DTYPES[loaded.dtype])
    elif plan.task == "v2v":
        pipe = video_input.video_pipeline(loaded)
    else:
        pipe = task_pipeline(loaded, plan.task)
    _activate_loras(loaded, plan)
    accepted = set(inspect.signature(pipe.__call__).parameters)
    arguments = _arguments(pipe, plan)
    if plan.controlnet is not None:
        arguments.update(control.control_arguments(plan, arguments))
    arguments.update(style.style_arguments(loaded, pipe, plan))
    if plan.task == "v2v":
        arguments.update(video_input.video_arguments(plan, arguments))
    kwargs = {k: v for k, v in arguments.items() if k in accepted}
    _check_denoising(pipe, kwargs)
    kwargs.update(_callback(pipe, accepted, plan, job))
    job.check()
    with torch.inference_mode():
        result = pipe(**kwargs)
    if plan.task in ("ttv", "v2v"):
        return outputs.videos(result, plan)
    if plan.task == "ttm":
        return outputs.sounds(pipe, result, plan)
    return outputs.pictures(result, plan)


def _check_denoising(pipe: Pipe, kwargs: Mapping[str, Any]) -> None:
    """Image-to-image runs int(steps x strength) steps: none would fail inside the pipeline."""
    defaults = inspect.signature(pipe.__call__).parameters
    if "strength" not in defaults or not {"image", "video"} & kwargs.keys():
        return
    strength = kwargs.get("strength", defaults["strength"].default)
    steps = kwargs.get("num_inference_steps", defaults["num_inference_steps"].default)
    if isinstance(strength, float) and isinstance(steps, int) and int(steps * strength) < 1:
        raise InvalidRequest(
            f"strength {strength} x steps {steps} leaves no denoising step: raise either",
            param="strength",
        )


def _arguments(pipe: Pipe, plan: Plan) -> dict[str, Any]:
    seeds = plan.seeds()
    arguments: dict[str, Any] = {
        "prompt": plan.prompt,
        "negative_prompt": plan.negative_prompt,
        "num_inference_steps": plan.steps,
        "guidance_scale": plan.guidance_scale,
        "width": plan.width,
        "height": plan.height,
        "generator": [torch.Generator(device="cpu").manual_seed(s) for s in seeds],
        "output_type": "np" if plan.task == "ttm" else "pil",
        **dict.fromkeys(COUNT_PARAMS, plan.n),
    }
    if plan.task in ("i2i", "inpaint"):
        given = (plan.width, plan.height) if plan.width and plan.height else None
        source = encode.image_size(plan.image or b"")  # from the header: not decoded
        size = given or i2i_size(*source)
        if plan.mask is not None:
            _check_mask(source, encode.image_size(plan.mask))
        if max(size) * plan.scale > plan.max_size:
            raise InvalidRequest(
                f"the input image ({size[0]}x{size[1]}) would give a {plan.scale * size[0]}x"
                f"{plan.scale * size[1]} output, over max_size {plan.max_size}: send it smaller",
                param="input_data",
            )
        image = encode.read_image(plan.image or b"")
        arguments.update(image=image.resize(size), width=size[0], height=size[1])
        arguments["strength"] = plan.strength
        if plan.mask is not None:
            arguments["mask_image"] = encode.read_mask(plan.mask).resize(size)
    if plan.task == "ttv":
        arguments["num_frames"] = plan.frames
    if plan.task == "ttm":
        arguments["audio_length_in_s"] = plan.duration_s
    return {key: value for key, value in arguments.items() if value is not None}


def _check_mask(image: tuple[int, int], mask: tuple[int, int]) -> None:
    """A 400 for a mask of another shape than the image (stretched, it repaints elsewhere)."""
    if abs(mask[0] * image[1] - mask[1] * image[0]) > 0.01 * image[0] * mask[1]:
        raise InvalidRequest(
            f"the mask ({mask[0]}x{mask[1]}) is not of the image's shape ({image[0]}x"
            f"{image[1]}): send a mask of the image's size",
            param="input_data",
        )


def _callback(pipe: Pipe, accepted: set[str], plan: Plan, job: Job[Any]) -> dict[str, Any]:
    def total() -> int:
        counted = getattr(pipe, "_num_timesteps", None)  # i2i: the steps strength leaves
        timesteps = getattr(pipe.scheduler, "timesteps", None)
        scheduled = len(timesteps) if timesteps is not None else 0
        return int(counted or scheduled or plan.steps or 0)

    if "callback_on_step_end" in accepted:

        def on_step_end(_pipe: Any, index: int, _t: Any, tensors: dict[str, Any]) -> Any:
            job.step(index + 1, total())
            return tensors

        return {"callback_on_step_end": on_step_end}
    if "callback" in accepted:

        def on_step(index: int, _t: Any, _latents: Any) -> None:
            job.step(index + 1, total())

        return {"callback": on_step, "callback_steps": 1}
    log.info("%s has no step callback: no progress, cancel only before it starts", pipe)
    return {}
