"""The bindings page: binding types from plugins, configured instances, health, load/unload."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .. import health
from ..errors import LollmsError
from ..keys import PLUGINS, REGISTRY
from ..listing import gather_models, list_instance, visible_bindings, visible_instance
from ..registry import Target
from ..resources.actions import Action, change_model
from ..security.auth import requires
from .catalog import binding_types, instance_view
from .filters import human_bytes
from .forms import ModelActionForm, read_action, read_page_form
from .render import is_htmx, page_handler, render, see_other

routes = web.RouteTableDef()


@routes.get("/bindings", name="bindings")
@requires("user")
@page_handler
async def bindings(request: web.Request) -> web.Response:
    """Binding types and instances (settings masked), with health and models."""
    registry = request.app[REGISTRY]
    visible = visible_bindings(registry)
    states, listings = await asyncio.gather(health.check_all(visible), gather_models(visible))
    plugins = request.app[PLUGINS]
    context = {
        "types": binding_types(plugins),
        "plugin_errors": plugins.shown_errors(),
        "instances": [
            instance_view(registry, b, states[b.instance_name], listing)
            for b, listing in zip(visible, listings, strict=True)
        ],
    }
    return await render(request, "bindings.html", "_bindings.html", context)


async def _instance(
    request: web.Request, notice: str | None = None, failure: LollmsError | None = None
) -> web.Response:
    registry = request.app[REGISTRY]
    binding = visible_instance(registry, request.match_info["instance"])
    state, listing = await asyncio.gather(health.check_for_caller(binding), list_instance(binding))
    context: dict[str, Any] = {
        "instance": instance_view(registry, binding, state, listing),
        "notice": notice,
        "failure": failure,
    }
    status = failure.status if failure else 200
    return await render(request, "bindings.html", "_instance.html", context, status=status)


@routes.post("/bindings/{instance}/health")
@requires("user")
@page_handler
async def check_health(request: web.Request) -> web.StreamResponse:
    """Check one instance's health now."""
    await read_action(request)
    if not is_htmx(request):
        visible_instance(request.app[REGISTRY], request.match_info["instance"])  # 404 if unknown
        return see_other("/bindings")
    return await _instance(request)


@routes.post("/bindings/{instance}/load")
@requires("admin")
@page_handler
async def load(request: web.Request) -> web.StreamResponse:
    """Load one model of an instance."""
    return await _model_action(request, "load")


@routes.post("/bindings/{instance}/unload")
@requires("admin")
@page_handler
async def unload(request: web.Request) -> web.StreamResponse:
    """Unload one model of an instance."""
    return await _model_action(request, "unload")


async def _model_action(request: web.Request, action: Action) -> web.StreamResponse:
    binding = request.app[REGISTRY].get(request.match_info["instance"])
    model = (await read_page_form(request, ModelActionForm))["model"]
    try:
        used = await change_model(request, Target(binding, model), action)
        if action == "load":
            notice = f"loaded {model}" + (f" ({human_bytes(used)})" if used else "")
        else:
            notice = f"unloaded {model}"
    except LollmsError as exc:
        if not is_htmx(request):
            raise
        return await _instance(request, failure=exc)  # the error shows inside its instance
    if not is_htmx(request):
        return see_other("/bindings")
    return await _instance(request, notice)
