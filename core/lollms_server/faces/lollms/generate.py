"""The lollms API under /api/v1/ (upstream lollms_server shape, without its secret leaks):
health, generate and the tokenizer routes; the listings are in listing."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ... import __version__
from ...errors import InvalidRequest, PayloadTooLarge
from ...httpkit.body import limits_of
from ...httpkit.endpoint import endpoint, off_loop_if_big
from ...ignored_fields import add_ignored_parameters
from ...keys import CONFIG, FUNCTIONS, GENERATION, PLUGINS, REGISTRY
from ...registry import Target
from ...security.auth import REQUEST_KEY_REQUIRED
from ...service.generation import expect, expect_token_ids
from ...service.toolloop import ToolLoop
from ...service.voices import voice_model
from ...video_frames import frame_count, videos_as_frames
from .answer import response_body, stream_answer
from .schemas import (
    DetokenizeSchema,
    GenerateResponseSchema,
    GenerateSchema,
    HealthSchema,
    TokenizeSchema,
)

routes = web.RouteTableDef()
PREFIX = "/api/v1"
# parameters the core reads itself: the model's keep_alive, the function loop's max_steps, the
# video frames a vision model gets
CORE_PARAMETERS = frozenset({"keep_alive", "max_steps", "frames"})
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
            "plugin_errors": request.app[PLUGINS].shown_errors(),
        }
    )


@routes.post(f"{PREFIX}/generate")
@endpoint(
    "Generate text, images, audio or video; SSE when stream is true",
    tag=TAG,
    body=GenerateSchema,
    response=GenerateResponseSchema,
    streams=True,
    media_body=True,
    generates=True,
)
async def generate(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """Run one generation; with `functions`, the server runs the function-calling loop."""
    functions, registry = request.app[FUNCTIONS], request.app[REGISTRY]
    chosen = functions.usable(body["functions"])
    generation_type = body["generation_type"]
    if chosen and generation_type != "ttt":
        raise InvalidRequest("functions need generation_type 'ttt'", param="functions")
    target = await lollms_target(request, generation_type, body)
    messages, inputs = body["messages"], body["inputs"]  # converted by GenerateSchema
    service = request.app[GENERATION]
    parameters = dict(body["parameters"])
    if generation_type == "tts" and (ref := await voice_model(registry, target.ref, parameters)):
        target = target if ref == target.ref else await registry.resolve_ref("tts", ref)
    # a vision model gets a video's frames; asking frames of one without vision is a 501;
    # otherwise the video reaches the binding as it came (one that reads video itself)
    wants_frames = "frames" in parameters or "vision" in target.binding.capabilities
    if generation_type == "ttt" and wants_frames and any(i.type == "video" for i in inputs):
        target.require("vision", "read a video's frames", "input_data")
        count = frame_count(parameters)
        messages, inputs = await videos_as_frames(messages, inputs, count)
    max_steps = min(parameters.pop("max_steps", None) or request.app[CONFIG].functions.max_steps,
                    request.app[CONFIG].functions.max_steps)  # fmt: skip
    add_ignored_parameters(request, _unread(target, body["parameters"], body["personality"]))
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
        await loop.complete(prepared)
        prepared = loop.served or prepared  # a fallback route's: the target that served
        outputs, usage, finish = [loop.answer, *loop.media], loop.usage, loop.finish_reason
    else:
        prepared, result = await service.run(prepared)
        outputs, usage, finish = list(result.outputs), result.usage, result.finish_reason
    media = sum(len(o.data) for o in outputs)
    text = await off_loop_if_big(
        media, lambda: json.dumps(response_body(prepared, outputs, usage, finish, loop))
    )
    return web.json_response(text=text, headers={"X-Request-Id": prepared.request.request_id})


def _unread(target: Target, parameters: dict[str, Any], personality: str | None) -> list[str]:
    """The parameters that neither the core (CORE_PARAMETERS) nor any binding the target may
    run on reads; none when one of them does not say what it reads, or with a personality
    (a script may read any)."""
    read = set(CORE_PARAMETERS)
    for candidate in (target, *target.fallbacks):
        said = candidate.binding.parameters_read
        if said is None or personality:
            return []
        read |= said
    return [name for name in parameters if name not in read]


async def _tokenizer_target(request: web.Request, body: dict[str, Any]) -> Target:
    return await lollms_target(request, "ttt", body)


async def lollms_target(request: web.Request, generation_type: str, body: dict[str, Any]) -> Target:
    """`binding_name` + `model_name`; without `binding_name`, `model_name` may be
    `<instance>/<model>` as on every face."""
    registry = request.app[REGISTRY]
    if body["binding_name"] is None:
        return await registry.resolve_ref(generation_type, body["model_name"])
    return await registry.resolve(generation_type, body["binding_name"], body["model_name"])


@routes.post(f"{PREFIX}/tokenize")
@endpoint("Token ids of a text under a model's tokenizer", tag=TAG, body=TokenizeSchema)
async def tokenize(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Tokenize."""
    target = await _tokenizer_target(request, body)
    target, tokens = await token_ids(
        request, target, body["text"], body["add_bos"], body["add_eos"]
    )
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


async def token_ids(
    request: web.Request, target: Target, text: str, add_bos: bool = False, add_eos: bool = False
) -> tuple[Target, list[int]]:
    """The token ids of `text` under the target's tokenizer (bounded in length and time), with
    the model's BOS/EOS token around them when asked and the model has one (as upstream), and
    the target that served them (a route's next one when one fails)."""
    _check_text_length(request, text)

    async def ids_of(served: Target) -> list[int]:
        binding = served.binding
        tokens = expect_token_ids(binding, await binding.tokenize(text, served.model), "tokenize()")
        if add_bos or add_eos:
            bos, eos = await binding.special_tokens(served.model)
            if add_bos and bos is not None and tokens[:1] != [bos]:
                tokens = [bos, *tokens]
            if add_eos and eos is not None and tokens[-1:] != [eos]:
                tokens = [*tokens, eos]
        return tokens

    timeout = request.app[CONFIG].request_timeout_s
    return await request.app[GENERATION].model_call(target, ids_of, timeout)


async def token_text(request: web.Request, target: Target, tokens: list[int]) -> tuple[Target, str]:
    """The text of token ids under the target's tokenizer (bounded in time), with the target
    that served it."""
    served, text = await request.app[GENERATION].model_call(
        target,
        lambda served: served.binding.detokenize(tokens, served.model),
        request.app[CONFIG].request_timeout_s,
    )
    return served, expect(served.binding, text, str, "detokenize()")


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
    target, text = await token_text(request, target, body["tokens"])
    return web.json_response({"text": text, "model": target.ref})


@routes.post(f"{PREFIX}/count_tokens")
@endpoint("Number of tokens of a text under a model's tokenizer", tag=TAG, body=TokenizeSchema)
async def count_tokens(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Count tokens."""
    target = await _tokenizer_target(request, body)
    target, tokens = await token_ids(
        request, target, body["text"], body["add_bos"], body["add_eos"]
    )
    return web.json_response({"count": len(tokens), "model": target.ref})
