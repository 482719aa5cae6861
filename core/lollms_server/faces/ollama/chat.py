"""The Ollama-compatible API under /api/ (everything but /api/v1/), backed by any binding.

Model names are `<instance>/<model>`; a name without a tag is listed with Ollama's `:latest`
(`echo/echo:latest`) and `:latest` is dropped again from names that clients send, so both
spellings work; names that carry their own tag (an Ollama backend's `llama3:8b`) are kept as
they are. Chat and generate stream NDJSON unless `stream` is false. Which request fields are
honoured, passed on, ignored or refused is listed in `schemas.py`. A request with nothing
to generate loads the model (unloads it with `keep_alive: 0`), which needs the admin role as
`/api/v1/load_model` does. Model management (pull, push, create, copy, delete) is not done
through this face: a 501.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from aiohttp import web
from marshmallow import Schema

from ... import __version__
from ...bindings import ChatMessage, link_tool_results
from ...errors import BackendError, InvalidRequest, NotSupported
from ...httpkit.body import limits_of
from ...httpkit.endpoint import endpoint, read_json, validate
from ...keys import GENERATION, LIFECYCLE, REGISTRY, STARTED_AT
from ...listing import visible_routes
from ...ollama_wire import keep_alive_seconds
from ...openai_names import resolve_model
from ...registry import Target
from ...resources.actions import change_model
from ...security.ratelimit import text_tokens
from ...service.personalities import split_personality
from . import models
from .schemas import (
    OllamaChatSchema,
    OllamaCopySchema,
    OllamaEmbeddingsSchema,
    OllamaEmbedSchema,
    OllamaGenerateSchema,
    OllamaModelSchema,
    OllamaShowSchema,
)
from .stream import Shape, nanoseconds, stream_ndjson

routes = web.RouteTableDef()
TAG = "ollama"
#: The Ollama API level this face implements (clients gate features on it).
OLLAMA_VERSION = "0.12.0"
MANAGEMENT = "lollms-server serves the models of its configured binding instances"


@routes.get("/api/version")
@endpoint("The Ollama API version this face implements", tag=TAG)
async def version(request: web.Request) -> web.Response:
    """`{"version"}` plus the lollms-server version."""
    return web.json_response({"version": OLLAMA_VERSION, "lollms_server_version": __version__})


@routes.get("/api/tags")
@endpoint(
    "Every model of every text binding instance, as `<instance>/<model>[:tag]`, and the routes",
    tag=TAG,
)
async def tags(request: web.Request) -> web.Response:
    """Models of all instances and the `[routes]` aliases the caller may use; an instance that
    fails to list is skipped and logged."""
    listed = await models.all_models(request.app[REGISTRY])
    started = request.app[STARTED_AT]
    aliases = [models.route_entry(n, started) for n in visible_routes(request.app[REGISTRY])]
    return web.json_response(
        {"models": aliases + [models.tag_entry(b, m, started) for b, m in listed]}
    )


@routes.get("/api/ps")
@endpoint("Loaded models of every instance", tag=TAG)
async def ps(request: web.Request) -> web.Response:
    """Models whose binding reports them loaded, or that the lifecycle loaded and the binding
    no longer lists, with keep_alive's expiry from the lifecycle."""
    registry, lifecycle = request.app[REGISTRY], request.app[LIFECYCLE]
    listed = await models.all_models(registry)
    loaded = [(b, m) for b, m in listed if m.loaded]
    loaded += models.unlisted_loaded(registry, listed, lifecycle)
    entries = [models.ps_entry(b, m, lifecycle) for b, m in loaded]
    return web.json_response({"models": entries})


@routes.post("/api/show")
@endpoint("Details, capabilities and model info of one model", tag=TAG, body=OllamaShowSchema)
async def show(request: web.Request, body: dict[str, Any]) -> web.Response:
    """One model; 404 when the instance has no such model."""
    target = await _resolve(request, body["model"])
    model = await models.find(target)
    return web.json_response(models.show_entry(target.binding, model, request.app[STARTED_AT]))


@routes.post("/api/chat")
@endpoint(
    "Chat; NDJSON chunks unless stream is false; no messages loads the model",
    tag=TAG,
    body=OllamaChatSchema,
    streams=True,
    media_body=True,
    generates=True,
)
async def chat(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """Run a chat through the resolved binding (`<personality>@<model>` applies a personality)."""
    personality, name = split_personality(body["model"])
    target = await _resolve(request, name or "")
    messages = link_tool_results(body["messages"])
    shape = Shape(target, chat=True, think=body["think"])
    if not messages:
        return await _load_or_unload(request, target, body["keep_alive"], shape)
    parameters = {**body["parameters"], **_tools(body, target)}
    run = Run(messages, parameters, body["stream"], raw=False, personality=personality)
    return await _run(request, target, run, shape)


@routes.post("/api/generate")
@endpoint(
    "Completion of a prompt; NDJSON chunks unless stream is false; no prompt loads the model",
    tag=TAG,
    body=OllamaGenerateSchema,
    streams=True,
    media_body=True,
    generates=True,
)
async def generate(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """Complete a prompt (templated by the binding unless `raw`)."""
    personality, name = split_personality(body["model"])
    target = await _resolve(request, name or "")
    messages: list[ChatMessage] = body["messages"]
    shape = Shape(target, chat=False, think=body["think"])
    if not any(m.role == "user" for m in messages):
        return await _load_or_unload(request, target, body["keep_alive"], shape)
    raw = bool(body["raw"])
    if raw and personality:
        raise InvalidRequest("a personality cannot apply to a raw prompt", param="model")
    run = Run(messages, body["parameters"], body["stream"], raw=raw, personality=personality)
    return await _run(request, target, run, shape)


@routes.post("/api/embed")
@endpoint("Embedding vectors of one text or a list of texts", tag=TAG, body=OllamaEmbedSchema)
async def embed(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Embed texts; an empty input only resolves the model and returns no vectors."""
    started = time.monotonic()
    target = await _embedding_target(request, body["model"])
    texts: list[str] = body["input"] or []
    if any(not text for text in texts):
        raise InvalidRequest("input must not contain empty strings", param="input")
    if texts:
        target, vectors = await _embed(request, target, texts, body["keep_alive"])
    else:
        vectors = []
    wanted = body["dimensions"]
    if wanted is not None and vectors:
        vectors = [_truncate(v, wanted, target) for v in vectors]
    return web.json_response(
        {
            "model": models.display_name(target),
            "embeddings": vectors,
            "total_duration": nanoseconds(time.monotonic() - started),
            "load_duration": 0,
            "prompt_eval_count": text_tokens(texts),  # what the key is charged for them
        }
    )


@routes.post("/api/embeddings")
@endpoint("One embedding vector of a prompt (legacy)", tag=TAG, body=OllamaEmbeddingsSchema)
async def embeddings(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Embed one prompt; an empty prompt gives an empty vector."""
    target = await _embedding_target(request, body["model"])
    prompt: str = body["prompt"] or ""
    vectors = (await _embed(request, target, [prompt], body["keep_alive"]))[1] if prompt else [[]]
    return web.json_response({"embedding": vectors[0]})


async def _not_supported(request: web.Request, schema: type[Schema]) -> NoReturn:
    validate(schema, await read_json(request), limits_of(request))
    raise NotSupported(
        f"{request.method} {request.path} is not supported: {MANAGEMENT}; manage models on "
        "the backend (e.g. `ollama pull` on the Ollama server an ollama instance points at)"
    )


@routes.post("/api/pull")
@endpoint("Not supported (501): models come from the configured instances", tag=TAG)
async def pull(request: web.Request) -> web.Response:
    """Refused: pulling is done on the backend."""
    await _not_supported(request, OllamaModelSchema)


@routes.post("/api/push")
@endpoint("Not supported (501): models come from the configured instances", tag=TAG)
async def push(request: web.Request) -> web.Response:
    """Refused: pushing is done on the backend."""
    await _not_supported(request, OllamaModelSchema)


@routes.post("/api/create")
@endpoint("Not supported (501): models come from the configured instances", tag=TAG)
async def create(request: web.Request) -> web.Response:
    """Refused: creating models is done on the backend."""
    await _not_supported(request, OllamaModelSchema)


@routes.post("/api/copy")
@endpoint("Not supported (501): models come from the configured instances", tag=TAG)
async def copy(request: web.Request) -> web.Response:
    """Refused: copying models is done on the backend."""
    await _not_supported(request, OllamaCopySchema)


@routes.delete("/api/delete")
@endpoint("Not supported (501): models come from the configured instances", tag=TAG)
async def delete(request: web.Request) -> web.Response:
    """Refused: deleting models is done on the backend."""
    await _not_supported(request, OllamaModelSchema)


async def _resolve(request: web.Request, name: str) -> Target:
    return await request.app[REGISTRY].resolve_ref("ttt", models.strip_latest(name))


async def _embedding_target(request: web.Request, name: str) -> Target:
    target = await resolve_model(request.app[REGISTRY], "ttt", models.strip_latest(name))
    target.require("embeddings", "make embeddings", "model")
    return target


async def _embed(
    request: web.Request, target: Target, texts: list[str], keep_alive: float | str | None
) -> tuple[Target, list[list[float]]]:
    """The vectors of `texts`, with the target that made them (a route's next one when one
    fails)."""
    seconds = None if keep_alive is None else keep_alive_seconds(keep_alive)
    served, vectors = await request.app[GENERATION].model_call(
        target,
        lambda served: served.binding.embed(texts, served.model),
        texts=texts,
        keep_alive=seconds,
        needs="embeddings",
    )
    binding = served.binding
    if len(vectors) != len(texts):
        raise BackendError(
            f"binding {binding.instance_name!r} returned {len(vectors)} vectors "
            f"for {len(texts)} inputs",
            binding=binding.instance_name,
        )
    return served, [[float(x) for x in vector] for vector in vectors]


def _truncate(vector: list[float], size: int, target: Target) -> list[float]:
    """The first `size` components, re-normalized to unit length (what Ollama does)."""
    if size > len(vector):
        raise InvalidRequest(
            f"{target.ref} makes {len(vector)}-dimensional vectors; dimensions must be at "
            f"most {len(vector)}",
            param="dimensions",
        )
    head = vector[:size]
    norm = math.sqrt(sum(x * x for x in head)) or 1.0
    return [x / norm for x in head]


def _tools(body: Mapping[str, Any], target: Target) -> dict[str, Any]:
    """`tools` for a binding that calls tools; 501 for one that cannot (as Ollama refuses)."""
    if not body["tools"]:
        return {}
    target.require("tools", "call tools", "tools")
    return {"tools": body["tools"]}


async def _load_or_unload(
    request: web.Request, target: Target, keep_alive: float | str | None, shape: Shape
) -> web.Response:
    """A request with nothing to generate: load the model, or unload it with keep_alive 0.

    As `/api/v1/load_model` and `unload_model`, this needs the admin role (the local machine
    has it); a binding that cannot load or unload just answers done. A load starts the
    model's keep_alive afresh, the request's own or the server's default, as Ollama does.
    """
    binding = target.binding
    seconds = None if keep_alive is None else keep_alive_seconds(keep_alive)
    unload = seconds == 0
    if "load_unload" in binding.capabilities:
        await change_model(request, target, "unload" if unload else "load")
        if not unload:
            request.app[LIFECYCLE].release(target, seconds)
    return web.json_response(shape.done("unload" if unload else "load"))


@dataclass(frozen=True)
class Run:
    """What a chat or generate request asks the binding for."""

    messages: list[ChatMessage]
    parameters: dict[str, Any]
    stream: bool
    raw: bool
    personality: str | None


async def _run(request: web.Request, target: Target, run: Run, shape: Shape) -> web.StreamResponse:
    if any(m.images for m in run.messages):
        target.require("vision", "read images", "images")
    service = request.app[GENERATION]
    prepared = await service.prepare(
        face="ollama",
        generation_type="ttt",
        target=target,
        messages=run.messages,
        parameters=run.parameters,
        personality=run.personality,
        raw_prompt=run.raw,
    )
    shape.started = prepared.started
    headers = {"X-Request-Id": prepared.request.request_id}
    if run.stream:
        return await stream_ndjson(request, prepared, shape, headers)
    served, result = await service.run(prepared)
    shape.model = models.display_name(served.target)  # a route's fallback may have served
    return web.json_response(shape.whole(result), headers=headers)
