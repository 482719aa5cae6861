"""The torch side of ControlNet: the task pipeline with a ControlNet, and its arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from diffusers import ControlNetModel

from lollms_server.sdk import InvalidRequest

from . import encode
from .plan import Plan, i2i_size

if TYPE_CHECKING:
    from .pipelines import Loaded

Pipe = Any


def controlled_pipeline(loaded: Loaded, plan: Plan, auto: dict[str, Any], dtype: Any) -> Pipe:
    """The plan's task pipeline with its ControlNet (loaded once, shared by every task)."""
    choice = plan.controlnet
    assert choice is not None
    key = f"{plan.task}+controlnet:{choice.name}"
    if key in loaded.derived:
        return loaded.derived[key]
    model = next(
        (
            p.controlnet
            for k, p in loaded.derived.items()
            if k.endswith(f"+controlnet:{choice.name}")
        ),
        None,
    )
    if model is None:
        model = ControlNetModel.from_pretrained(
            choice.path, torch_dtype=dtype, local_files_only=True
        )
        model.to(loaded.device)
    try:
        derived = auto[plan.task].from_pipe(loaded.pipe, controlnet=model)
    except (ValueError, KeyError) as exc:
        raise InvalidRequest(
            f"{loaded.entry.name!r} cannot do {plan.task} with a ControlNet: {exc}",
            param="controlnet",
        ) from exc
    derived.set_progress_bar_config(disable=True)
    loaded.derived[key] = derived
    return derived


def control_arguments(plan: Plan, arguments: dict[str, Any]) -> dict[str, Any]:
    """The ControlNet's arguments: the control image at the output size, scale, start, end."""
    choice = plan.controlnet
    assert choice is not None
    control = encode.read_image(choice.image)
    width, height = arguments.get("width"), arguments.get("height")
    size = (width, height) if width and height else i2i_size(*control.size)
    found = {
        "width": size[0],
        "height": size[1],
        "controlnet_conditioning_scale": choice.scale,
        "control_guidance_start": choice.start,
        "control_guidance_end": choice.end,
    }
    # text-to-image takes the control image as `image`; image-to-image as `control_image`
    found["image" if plan.task == "tti" else "control_image"] = control.resize(size)
    return found
