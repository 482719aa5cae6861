"""The torch side of style references: an IP-Adapter loaded into the pipeline that runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lollms_server.sdk import InvalidRequest

from . import encode
from .adapters import IP_ADAPTER_WEIGHTS, STYLE_ROLE
from .plan import Plan

if TYPE_CHECKING:
    from .pipelines import Loaded


def style_arguments(loaded: Loaded, pipe: Any, plan: Plan) -> dict[str, Any]:
    """Load (or drop) the plan's IP-Adapter on `pipe`; the pipeline's style arguments.

    An IP-Adapter changes the UNet that every task pipeline of the model shares, and a UNet
    with one needs a style image: it stays loaded while requests keep naming it, and a request
    without a style reference (or with another) unloads it first.
    """
    wanted = plan.style
    if loaded.style is not None:
        name, holder = loaded.style
        if wanted is None or name != wanted.name or holder is not pipe:
            holder.unload_ip_adapter()
            loaded.style = None
    if wanted is None:
        return {}
    if loaded.style is None:
        if not hasattr(pipe, "load_ip_adapter"):
            raise InvalidRequest(
                f"{STYLE_ROLE}: {loaded.entry.name!r} ({type(pipe).__name__}) takes no IP-Adapter",
                param="input_data",
            )
        pipe.load_ip_adapter(
            wanted.path, subfolder="", weight_name=IP_ADAPTER_WEIGHTS, local_files_only=True
        )
        loaded.style = (wanted.name, pipe)
    pipe.set_ip_adapter_scale(wanted.scale)
    return {"ip_adapter_image": encode.read_image(wanted.image)}
