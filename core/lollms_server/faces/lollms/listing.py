"""The listing routes of the lollms API (/api/v1): upstream lollms_server's shapes, with our
richer fields alongside; where one JSON value cannot carry both (`list_models`,
`list_functions`, `get_default_bindings`), `?format=lollms-server` gives ours."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ... import health
from ...bindings import DEFAULT_MAX_TOKENS, GENERATION_TYPES
from ...errors import NotFound
from ...httpkit.convert import health_dict, model_dict
from ...httpkit.endpoint import endpoint
from ...keys import FUNCTIONS, PERSONALITIES, PLUGINS, REGISTRY
from ...listing import gather_models, list_models_of, visible_bindings, visible_instance
from ...security.principal import current
from . import upstream_shapes as shapes
from .schemas import ListingQuerySchema, ModelInfoQuerySchema

routes = web.RouteTableDef()
PREFIX = "/api/v1"
TAG = "lollms"
OURS = "lollms-server"


@routes.get(f"{PREFIX}/list_bindings")
@endpoint("Binding types from plugins and configured instances (secrets masked)", tag=TAG)
async def list_bindings(request: web.Request) -> web.Response:
    """Binding types and instances."""
    plugins = request.app[PLUGINS]
    registry = request.app[REGISTRY]
    types = {
        name: shapes.binding_type(name, cls, plugins.plugin_of(name))
        for name, cls in sorted(plugins.binding_classes.items())
    }
    instances = {
        b.instance_name: shapes.binding_instance(b, registry.default_models.get(b.instance_name))
        for b in visible_bindings(registry)
    }
    return web.json_response(
        {
            "binding_types": types,
            "binding_instances": instances,
            "plugin_errors": plugins.shown_errors(),
        }
    )


@routes.get(f"{PREFIX}/list_active_bindings")
@endpoint("Configured instances with their capabilities and current health", tag=TAG)
async def list_active_bindings(request: web.Request) -> web.Response:
    """Instances and health, under `bindings` as upstream."""
    registry = request.app[REGISTRY]
    bindings = visible_bindings(registry)
    states = await health.check_all(bindings)
    return web.json_response(
        {
            "bindings": {
                b.instance_name: {
                    **shapes.binding_instance(b, registry.default_models.get(b.instance_name)),
                    "capabilities": sorted(b.capabilities),
                    "health": health_dict(states[b.instance_name]),
                }
                for b in bindings
            }
        }
    )


@routes.get(PREFIX + "/list_available_models/{instance}")
@endpoint("Models of one binding instance", tag=TAG)
async def list_available_models(request: web.Request) -> web.Response:
    """Models of one instance; a backend failure is a 5xx, never an empty list."""
    binding = visible_instance(request.app[REGISTRY], request.match_info["instance"])
    models = await list_models_of(binding)
    return web.json_response(
        {
            "binding_instance_name": binding.instance_name,
            "instance": binding.instance_name,
            "models": [shapes.available_model(m, binding.instance_name) for m in models],
        }
    )


@routes.get(f"{PREFIX}/list_models")
@endpoint(
    "Model names of every instance (`?format=lollms-server`: full entries); failing "
    "instances listed under errors",
    tag=TAG,
    query=ListingQuerySchema,
)
async def list_models(request: web.Request, query: dict[str, Any]) -> web.Response:
    """Models of all instances."""
    listings = await gather_models(request.app[REGISTRY])
    errors = {item.name: item.error.to_dict() for item in listings if item.error}
    ok = [item for item in listings if not item.error]
    if query["format"] == OURS:
        models: dict[str, list[Any]] = {
            item.name: [model_dict(m, item.name) for m in item.models] for item in ok
        }
    else:
        models = {item.name: [m.name for m in item.models] for item in ok}
    return web.json_response({"models": models, "errors": errors})


@routes.get(PREFIX + "/get_model_info/{instance}")
@endpoint(
    "One model's details (no model_name: the instance's default model)",
    tag=TAG,
    query=ModelInfoQuerySchema,
)
async def get_model_info(request: web.Request, query: dict[str, Any]) -> web.Response:
    """Details of one model of an instance."""
    registry = request.app[REGISTRY]
    binding = visible_instance(registry, request.match_info["instance"])
    wanted = query["model_name"] or registry.default_models.get(binding.instance_name)
    models = await list_models_of(binding)
    if wanted is None and models:
        wanted = models[0].name  # no default configured: the instance answers with its first
    for model in models:
        if model.name == wanted:
            return web.json_response(shapes.model_info(model, binding))
    raise NotFound(
        f"instance {binding.instance_name!r} has no model {wanted!r}"
        if wanted
        else f"instance {binding.instance_name!r} lists no model",
        binding=binding.instance_name,
        param="model_name",
    )


@routes.get(f"{PREFIX}/list_personalities")
@endpoint("Installed personalities", tag=TAG)
async def list_personalities(request: web.Request) -> web.Response:
    """Personalities and loading problems."""
    store = request.app[PERSONALITIES]
    return web.json_response(
        {
            "personalities": {n: shapes.personality(p) for n, p in sorted(store.by_name.items())},
            "problems": store.problems,
        }
    )


@routes.get(f"{PREFIX}/list_functions")
@endpoint(
    "Function names (`?format=lollms-server`: with their parameter schemas)",
    tag=TAG,
    query=ListingQuerySchema,
)
async def list_functions(request: web.Request, query: dict[str, Any]) -> web.Response:
    """Functions."""
    functions = request.app[FUNCTIONS]
    if query["format"] == OURS:
        described = {n: f.to_dict() for n, f in sorted(functions.by_name.items())}
        return web.json_response({"functions": described, "problems": functions.problems})
    return web.json_response(
        {"functions": sorted(functions.by_name), "problems": functions.problems}
    )


@routes.get(f"{PREFIX}/get_default_bindings")
@endpoint(
    "Default instance (and model) per generation type (`?format=lollms-server`: nested)",
    tag=TAG,
    query=ListingQuerySchema,
)
async def get_default_bindings(request: web.Request, query: dict[str, Any]) -> web.Response:
    """Defaults per generation type: upstream's `<type>_binding` keys, with `<type>_model`."""
    registry = request.app[REGISTRY]
    principal = current()
    nested: dict[str, dict[str, str | None]] = {}
    for generation_type, ref in sorted(registry.defaults.items()):
        instance, _, named = ref.partition("/")
        model = named or registry.default_models.get(instance)
        usable = ref in registry.routes or (
            principal is not None
            and principal.may_use_instance(instance)
            and (model is None or principal.may_use(instance, model))
        )  # a key is not told of a default it may not use
        nested[generation_type] = {
            "binding_instance": instance if usable else None,
            "model_name": model if usable else None,
        }
    if query["format"] == OURS:
        return web.json_response({"defaults": nested})
    flat: dict[str, str | int | None] = {}
    for generation_type in GENERATION_TYPES:
        chosen = nested.get(generation_type, {})
        flat[f"{generation_type}_binding"] = chosen.get("binding_instance")
        flat[f"{generation_type}_model"] = chosen.get("model_name")
    flat["default_context_size"] = None  # each model has its own (get_model_info)
    flat["default_max_output_tokens"] = DEFAULT_MAX_TOKENS
    return web.json_response({"defaults": flat})
