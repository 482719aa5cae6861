"""The lollms API under /api/v1/ (upstream lollms_server shape, without its secret leaks)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .. import __version__, health
from ..bindings import closing_stream
from ..errors import InvalidRequest, NotFound, PayloadTooLarge
from ..generation import guarded
from ..keys import CONFIG, FUNCTIONS, GENERATION, PERSONALITIES, PLUGINS, REGISTRY
from ..listing import gather_models, list_models_of, visible_bindings, visible_instance
from ..registry import Target
from ..schemas import (
    DetokenizeSchema,
    GenerateResponseSchema,
    GenerateSchema,
    HealthSchema,
    ModelInfoQuerySchema,
    TokenizeSchema,
)
from ..security.auth import REQUEST_KEY_REQUIRED
from ..toolloop import ToolLoop
from .body import limits_of
from .convert import (
    health_dict,
    lollms_inputs,
    media_size,
    model_dict,
)
from .endpoint import endpoint, off_loop_if_big
from .lollms_answer import response_body, stream_answer

routes = web.RouteTableDef()
PREFIX = "/api/v1"
TAG = "lollms"


@routes.get(f"{PREFIX}/health")
@endpoint(
    "Server liveness, version and whether a key is needed",
    tag=TAG,
    response=HealthSchema,
    access="public",
)
async def get_health(request: web.Request) -> web.Response:
    """Public liveness probe."""
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "api_key_required": request.get(REQUEST_KEY_REQUIRED, True),
            "plugin_errors": request.app[PLUGINS].errors,
        }
    )


@routes.get(f"{PREFIX}/list_bindings")
@endpoint("Binding types from plugins and configured instances (secrets masked)", tag=TAG)
async def list_bindings(request: web.Request) -> web.Response:
    """Binding types and instances."""
    plugins = request.app[PLUGINS]
    types: dict[str, Any] = {}
    for name, cls in sorted(plugins.binding_classes.items()):
        owner = plugins.plugin_of(name)
        types[name] = {
            "title": cls.title,
            "description": cls.description,
            "capabilities": sorted(cls.capabilities),
            "plugin": owner.name if owner else None,
            "version": owner.version if owner else None,
            "settings": sorted(cls.ConfigSchema().fields),
        }
    instances = {
        binding.instance_name: {
            "type": binding.name,
            "default_model": request.app[REGISTRY].default_models.get(binding.instance_name),
            "settings": binding.public_settings(),
        }
        for binding in visible_bindings(request.app[REGISTRY])
    }
    return web.json_response(
        {"binding_types": types, "binding_instances": instances, "plugin_errors": plugins.errors}
    )


@routes.get(f"{PREFIX}/list_active_bindings")
@endpoint("Configured instances with their capabilities and current health", tag=TAG)
async def list_active_bindings(request: web.Request) -> web.Response:
    """Instances and health."""
    bindings = visible_bindings(request.app[REGISTRY])
    states = await health.check_all(bindings)
    return web.json_response(
        {
            b.instance_name: {
                "type": b.name,
                "capabilities": sorted(b.capabilities),
                "health": health_dict(states[b.instance_name]),
            }
            for b in bindings
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
            "instance": binding.instance_name,
            "models": [model_dict(m, binding.instance_name) for m in models],
        }
    )


@routes.get(f"{PREFIX}/list_models")
@endpoint("Models of every instance; failing instances listed under errors", tag=TAG)
async def list_models(request: web.Request) -> web.Response:
    """Models of all instances."""
    listings = await gather_models(request.app[REGISTRY])
    models = {
        item.name: [model_dict(m, item.name) for m in item.models]
        for item in listings
        if not item.error
    }
    errors = {item.name: item.error.to_dict() for item in listings if item.error}
    return web.json_response({"models": models, "errors": errors})


@routes.get(PREFIX + "/get_model_info/{instance}")
@endpoint("One model's details", tag=TAG, query=ModelInfoQuerySchema)
async def get_model_info(request: web.Request, query: dict[str, Any]) -> web.Response:
    """Details of one model of an instance."""
    binding = visible_instance(request.app[REGISTRY], request.match_info["instance"])
    for model in await list_models_of(binding):
        if model.name == query["model_name"]:
            return web.json_response(model_dict(model, binding.instance_name))
    raise NotFound(
        f"instance {binding.instance_name!r} has no model {query['model_name']!r}",
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
            "personalities": {n: p.to_dict() for n, p in sorted(store.by_name.items())},
            "problems": store.problems,
        }
    )


@routes.get(f"{PREFIX}/list_functions")
@endpoint("Registered functions (tools) with their parameter schemas", tag=TAG)
async def list_functions(request: web.Request) -> web.Response:
    """Functions."""
    functions = request.app[FUNCTIONS]
    return web.json_response(
        {
            "functions": {n: f.to_dict() for n, f in sorted(functions.by_name.items())},
            "problems": functions.problems,
        }
    )


@routes.get(f"{PREFIX}/get_default_bindings")
@endpoint("Default instance (and model) per generation type", tag=TAG)
async def get_default_bindings(request: web.Request) -> web.Response:
    """Defaults per generation type."""
    registry = request.app[REGISTRY]
    defaults = {}
    for generation_type, ref in sorted(registry.defaults.items()):
        instance, _, model = ref.partition("/")
        defaults[generation_type] = {
            "binding_instance": instance,
            "model_name": model or registry.default_models.get(instance),
        }
    return web.json_response({"defaults": defaults})


@routes.post(f"{PREFIX}/generate")
@endpoint(
    "Generate text, images, audio or video; SSE when stream is true",
    tag=TAG,
    body=GenerateSchema,
    response=GenerateResponseSchema,
    streams=True,
    media_body=True,
)
async def generate(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """Run one generation; with `functions`, the server runs the function-calling loop."""
    functions = request.app[FUNCTIONS]
    chosen = functions.usable(body["functions"])
    generation_type = body["generation_type"]
    if chosen and generation_type != "ttt":
        raise InvalidRequest("functions need generation_type 'ttt'", param="functions")
    target = await request.app[REGISTRY].resolve(
        generation_type, body["binding_name"], body["model_name"]
    )
    items = body["input_data"]
    messages, inputs = await off_loop_if_big(media_size(items), lollms_inputs, items)
    service = request.app[GENERATION]
    parameters = dict(body["parameters"])
    max_steps = min(parameters.pop("max_steps", None) or request.app[CONFIG].functions.max_steps,
                    request.app[CONFIG].functions.max_steps)  # fmt: skip
    prepared = await service.prepare(
        face="lollms",
        generation_type=generation_type,
        target=target,
        messages=messages,
        inputs=inputs,
        parameters=parameters,
        personality=body["personality"],
    )
    if chosen and prepared.scripted:
        raise InvalidRequest(
            "a scripted personality runs its own workflow; its script calls functions "
            "(context.call_function) instead of `functions`",
            param="functions",
        )
    loop = ToolLoop(service, functions, chosen, max_steps) if chosen else None
    if body["stream"]:
        return await stream_answer(request, prepared, loop)
    if loop is not None:
        async with closing_stream(loop.run(prepared)) as events:
            async for _event in events:
                pass
        outputs, usage, finish = [loop.answer, *loop.media], loop.usage, loop.finish_reason
    else:
        result = await service.generate(prepared)
        outputs, usage, finish = list(result.outputs), result.usage, result.finish_reason
    media = sum(len(o.data) for o in outputs)
    text = await off_loop_if_big(
        media, lambda: json.dumps(response_body(prepared, outputs, usage, finish, loop))
    )
    return web.json_response(text=text, headers={"X-Request-Id": prepared.request.request_id})


async def _tokenizer_target(request: web.Request, body: dict[str, Any]) -> Target:
    return await request.app[REGISTRY].resolve("ttt", body["binding_name"], body["model_name"])


@routes.post(f"{PREFIX}/tokenize")
@endpoint("Token ids of a text under a model's tokenizer", tag=TAG, body=TokenizeSchema)
async def tokenize(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Tokenize."""
    target = await _tokenizer_target(request, body)
    tokens = await token_ids(request, target, body["text"])
    cap = limits_of(request).max_token_ids
    if len(tokens) > cap:
        raise PayloadTooLarge(
            f"the text has {len(tokens)} tokens, more than {cap} (server setting "
            "max_token_ids); use count_tokens to count them",
            param="text",
        )
    reply = {"tokens": tokens, "count": len(tokens), "model": target.ref}
    text = await off_loop_if_big(len(tokens) * 4, json.dumps, reply)
    return web.json_response(text=text)


async def token_ids(request: web.Request, target: Target, text: str) -> list[int]:
    """The token ids of `text` under the target's tokenizer (bounded in length and time)."""
    _check_text_length(request, text)
    return await guarded(
        target.binding,
        target.binding.tokenize(text, target.model),
        request.app[CONFIG].request_timeout_s,
    )


async def token_text(request: web.Request, target: Target, tokens: list[int]) -> str:
    """The text of token ids under the target's tokenizer (bounded in time)."""
    return await guarded(
        target.binding,
        target.binding.detokenize(tokens, target.model),
        request.app[CONFIG].request_timeout_s,
    )


def _check_text_length(request: web.Request, text: str) -> None:
    """A text too long to have at most max_token_ids tokens (over 16 characters a token) is
    refused before a tokenizer spends time and memory on it."""
    cap = limits_of(request).max_token_ids
    if len(text) > 16 * cap:
        raise PayloadTooLarge(
            f"the text has {len(text)} characters: far more than {cap} tokens (server setting "
            "max_token_ids, 16 characters a token at most)",
            param="text",
        )


@routes.post(f"{PREFIX}/detokenize")
@endpoint("Text of token ids under a model's tokenizer", tag=TAG, body=DetokenizeSchema)
async def detokenize(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Detokenize."""
    target = await _tokenizer_target(request, body)
    text = await token_text(request, target, body["tokens"])
    return web.json_response({"text": text, "model": target.ref})


@routes.post(f"{PREFIX}/count_tokens")
@endpoint("Number of tokens of a text under a model's tokenizer", tag=TAG, body=TokenizeSchema)
async def count_tokens(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Count tokens."""
    target = await _tokenizer_target(request, body)
    tokens = await token_ids(request, target, body["text"])
    return web.json_response({"count": len(tokens), "model": target.ref})
