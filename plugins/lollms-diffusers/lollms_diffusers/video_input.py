"""Video-to-video: the input video's frames decoded with PyAV, and the family's v2v pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import diffusers

from lollms_server.sdk import InvalidRequest, read_video

from .plan import V2V_PIPELINES, Plan, i2i_size

if TYPE_CHECKING:
    from .pipelines import Loaded


def video_pipeline(loaded: Loaded) -> Any:
    """The model's video-to-video pipeline, sharing its weights (made once)."""
    if "v2v" not in loaded.derived:
        name = V2V_PIPELINES.get(loaded.entry.family)
        if name is None:
            raise InvalidRequest(f"{loaded.entry.name!r} cannot do video-to-video", param="model")
        derived = getattr(diffusers, name).from_pipe(loaded.pipe)
        derived.set_progress_bar_config(disable=True)
        loaded.derived["v2v"] = derived
    return loaded.derived["v2v"]


def video_arguments(plan: Plan, arguments: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's `video` (frames at the output size), size and strength."""
    frames = read_video(plan.video or b"", plan.frames or 1)
    given = (plan.width, plan.height) if plan.width and plan.height else None
    size = given or i2i_size(*frames[0].size)
    if max(size) > plan.max_size:
        raise InvalidRequest(
            f"the input video ({size[0]}x{size[1]}) is over max_size {plan.max_size}: "
            "send it smaller or set width and height",
            param="input_data",
        )
    found = {"video": [frame.resize(size) for frame in frames], "width": size[0]}
    found.update(height=size[1], strength=plan.strength or arguments.get("strength"))
    return {key: value for key, value in found.items() if value is not None}
