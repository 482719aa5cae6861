"""`/v1/models`: every model of every instance the caller may use, and the `[routes]` aliases."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ...bindings import Binding, ModelInfo
from ...errors import ModelNotFound
from ...httpkit.endpoint import endpoint
from ...keys import REGISTRY, STARTED_AT
from ...listing import gather_models, list_models_of, visible_bindings, visible_routes

log = logging.getLogger(__name__)
TAG = "openai"
ROUTE_OWNER = "lollms-server"  # a route's `owned_by`: the server picks the target that serves
routes = web.RouteTableDef()


@routes.get("/v1/models")
@endpoint(
    "Every model of every binding instance, as `<instance>/<model>`, and the route aliases",
    tag=TAG,
)
async def list_models(request: web.Request) -> web.Response:
    """Models of all instances and the `[routes]` aliases, the default text model first (a
    client that takes the first one gets what the server is set up for); an instance that
    fails to list is skipped."""
    registry = request.app[REGISTRY]
    created = int(request.app[STARTED_AT])
    data: list[dict[str, Any]] = [_route_object(name, created) for name in visible_routes(registry)]
    for item in await gather_models(registry):
        if item.error is not None:
            log.warning("models of %s skipped: %s", item.name, item.error.message)
        data.extend(_model_object(item.binding, model, created) for model in item.models)
    default = registry.defaults.get("ttt", "")
    instance, _, model = default.partition("/")
    first = (
        default
        if default in registry.routes
        else f"{instance}/{model or registry.default_models.get(instance)}"
    )
    data.sort(key=lambda entry: (entry["id"] != first, entry["owned_by"] != instance))
    return web.json_response({"object": "list", "data": data})


@routes.get("/v1/models/{model_id:.+}")
@endpoint("One model, by its `<instance>/<model>` id (or a route alias)", tag=TAG)
async def retrieve_model(request: web.Request) -> web.Response:
    """One model or route alias; 404 when the instance or the model does not exist."""
    model_id = request.match_info["model_id"]
    if model_id in visible_routes(request.app[REGISTRY]):
        return web.json_response(_route_object(model_id, int(request.app[STARTED_AT])))
    instance, _, name = model_id.partition("/")
    binding = request.app[REGISTRY].instances.get(instance)
    if binding is not None and name and visible_bindings([binding]):
        for model in await list_models_of(binding):
            if model.name == name:
                created = int(request.app[STARTED_AT])
                return web.json_response(_model_object(binding, model, created))
    raise ModelNotFound(
        f"the model {model_id!r} does not exist; GET /v1/models lists `<instance>/<model>` ids",
        param="model",
    )


def _route_object(name: str, created: int) -> dict[str, Any]:
    """A `[routes]` alias as a model: the server picks the target that serves it."""
    return {"id": name, "object": "model", "created": created, "owned_by": ROUTE_OWNER}


def _model_object(binding: Binding, model: ModelInfo, created: int) -> dict[str, Any]:
    name = binding.instance_name
    return {"id": f"{name}/{model.name}", "object": "model", "created": created, "owned_by": name}
