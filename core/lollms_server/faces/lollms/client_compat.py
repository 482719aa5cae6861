"""The routes `lollms-client`'s `lollms` bindings call under `/lollms/v1` (next to `/v1`).

Its LLM binding asks here for token ids, context sizes, personalities, models per binding type
and capabilities; its TTS and STT fall back here when `/v1/audio/*` refuses them. Model ids are
the `/v1` ones (`<instance>/<model>`, a bare name or none for the default). Every route runs on
the services the other faces use.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...bindings import GENERATION_TYPES, Binding, InputItem, ModelInfo
from ...errors import NotFound, PayloadTooLarge
from ...httpkit.body import limits_of
from ...httpkit.convert import decode_image
from ...httpkit.endpoint import endpoint, off_loop_if_big
from ...keys import PERSONALITIES, REGISTRY
from ...listing import gather_models, list_models_of, visible_bindings
from ...openai_names import resolve_model
from ...registry import Target
from ...service.personalities import split_personality
from ..openai import media as openai_media
from .generate import token_ids, token_text
from .schemas_compat import (
    ImageEditSchema,
    ModelOnlySchema,
    ModelsQuerySchema,
    ModelTextSchema,
    ModelTokensSchema,
    SpeechSchema,
    TranscriptionForm,
)

PREFIX = "/lollms/v1"
TAG = "lollms-client"
routes = web.RouteTableDef()
#: lollms-client's binding kinds -> our generation types.
KINDS = {"llm": "ttt", "tti": "tti", "tts": "tts", "stt": "stt", "ttv": "ttv", "ttm": "ttm"}
KINDS.update({kind: kind for kind in GENERATION_TYPES})


async def _text_target(request: web.Request, model: str | None) -> Target:
    """The text model of a `/v1` model id (a `<personality>@` prefix names no other model)."""
    return await resolve_model(request.app[REGISTRY], "ttt", split_personality(model)[1])


@routes.post(f"{PREFIX}/tokenize")
@endpoint("Token ids and count of a text (lollms-client)", tag=TAG, body=ModelTextSchema)
async def tokenize(request: web.Request, body: dict[str, Any]) -> web.Response:
    """`{tokens, count, model}`."""
    target = await _text_target(request, body["model"])
    target, tokens = await token_ids(request, target, body["text"])
    cap = limits_of(request).max_token_ids
    if len(tokens) > cap:
        raise PayloadTooLarge(
            f"the text has {len(tokens)} tokens, more than {cap} (server setting max_token_ids)",
            param="text",
        )
    return web.json_response({"tokens": tokens, "count": len(tokens), "model": target.ref})


@routes.post(f"{PREFIX}/detokenize")
@endpoint("Text of token ids (lollms-client)", tag=TAG, body=ModelTokensSchema)
async def detokenize(request: web.Request, body: dict[str, Any]) -> web.Response:
    """`{text, model}`."""
    target = await _text_target(request, body["model"])
    target, text = await token_text(request, target, body["tokens"])
    return web.json_response({"text": text, "model": target.ref})


@routes.post(f"{PREFIX}/context_size")
@endpoint("Context size of a model (lollms-client)", tag=TAG, body=ModelOnlySchema)
async def context_size(request: web.Request, body: dict[str, Any]) -> web.Response:
    """`{context_size, model}`; a model whose binding does not know it is a 404."""
    target = await _text_target(request, body["model"])
    size = target.binding.context_length(target.model)
    if size is None:
        size = next(
            (m.context_length for m in await list_models_of(target.binding)
             if m.name == target.model),
            None,
        )  # fmt: skip
    if size is None:
        raise NotFound(
            f"{target.ref} does not say its context size", binding=target.binding.instance_name
        )
    return web.json_response({"context_size": size, "model": target.ref})


@routes.get(f"{PREFIX}/personalities")
@endpoint("Installed personalities (lollms-client)", tag=TAG)
async def personalities(request: web.Request) -> web.Response:
    """`{data: [personality...]}`; each is used as `personality` on `/v1/chat/completions`."""
    store = request.app[PERSONALITIES]
    data = [p.to_dict() for _, p in sorted(store.by_name.items())]
    return web.json_response({"object": "list", "data": data})


@routes.get(f"{PREFIX}/capabilities")
@endpoint("Generation types served and the instances behind them (lollms-client)", tag=TAG)
async def capabilities(request: web.Request) -> web.Response:
    """`{capabilities: [type...], active_bindings: {instance: {...}}}`."""
    bindings = visible_bindings(request.app[REGISTRY])
    active = {
        b.instance_name: {"type": b.name, "capabilities": sorted(b.capabilities)} for b in bindings
    }
    served = sorted({c for b in bindings for c in b.capabilities})
    return web.json_response({"capabilities": served, "active_bindings": active})


@routes.get(PREFIX + "/{kind}/models")
@endpoint("Models of one binding kind: llm, tti, tts, stt, ... (lollms-client)", tag=TAG,
          query=ModelsQuerySchema)  # fmt: skip
async def models_of_kind(request: web.Request, query: dict[str, Any]) -> web.Response:
    """`{data: [{id, model_name, binding, ...}]}`; instances that fail to list are left out."""
    kind = request.match_info["kind"]
    generation_type = KINDS.get(kind)
    if generation_type is None:
        raise NotFound(f"no binding kind {kind!r}; kinds: {', '.join(sorted(KINDS))}")
    wanted = [
        b for b in request.app[REGISTRY]
        if generation_type in b.capabilities
        and query["binding_alias"] in (None, b.instance_name)
    ]  # fmt: skip
    data = [
        _model_entry(item.binding, model)
        for item in await gather_models(wanted)
        for model in item.models
        if not model.capabilities or generation_type in model.capabilities
    ]
    return web.json_response({"object": "list", "data": data})


def _model_entry(binding: Binding, model: ModelInfo) -> dict[str, Any]:
    return {
        "id": f"{binding.instance_name}/{model.name}",
        "object": "model",
        "model_name": f"{binding.instance_name}/{model.name}",
        "binding": binding.instance_name,
        "binding_type": binding.name,
        "context_size": model.context_length,
        "capabilities": sorted(model.capabilities),
    }


@routes.post(f"{PREFIX}/audio/speech")
@endpoint("Speak a text in the format the binding makes (lollms-client)", tag=TAG,
          body=SpeechSchema, binary_response="audio/*", generates=True)  # fmt: skip
async def speech(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Text-to-speech; unlike `/v1/audio/speech`, any `response_format` gets the binding's own
    format (its mime type says which), as lollms-client plays what it receives."""
    found = {"voice": body["voice"], "speed": body["speed"], "language": body["language"]}
    parameters = {key: value for key, value in found.items() if value is not None}
    prepared, audio = await openai_media.speak(request, body["model"], body["input"], parameters)
    return web.Response(
        body=audio.data,
        content_type=audio.mime_type,
        headers={"X-Request-Id": prepared.request.request_id},
    )


@routes.get(f"{PREFIX}/audio/voices")
@endpoint("Voices of the text-to-speech models (lollms-client)", tag=TAG)
async def voices(request: web.Request) -> web.Response:
    """`{data: [{id, name, model}]}`: each tts model id is a voice."""
    tts = [b for b in request.app[REGISTRY] if "tts" in b.capabilities]
    data = [
        {"id": f"{item.name}/{m.name}", "name": m.name, "model": f"{item.name}/{m.name}"}
        for item in await gather_models(tts)
        for m in item.models
        if not m.capabilities or "tts" in m.capabilities
    ]
    return web.json_response({"object": "list", "data": data})


@routes.post(f"{PREFIX}/audio/transcriptions")
@endpoint(
    "Transcribe an audio file (lollms-client)", tag=TAG, form=TranscriptionForm, generates=True
)
async def transcriptions(request: web.Request, form: dict[str, Any]) -> web.Response:
    """`{text}`."""
    parameters = {"language": form["language"]} if form["language"] else {}
    prepared, text = await openai_media.transcribe_upload(
        request, form["model"], form["file"], parameters
    )
    return web.json_response({"text": text}, headers={"X-Request-Id": prepared.request.request_id})


@routes.post(f"{PREFIX}/images/edit")
@endpoint("Edit a base64 image with a prompt (lollms-client)", tag=TAG, body=ImageEditSchema,
          media_body=True, generates=True)  # fmt: skip
async def images_edit(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Image-to-image (`i2i`), answered as `/v1/images/edits` is (`data[0].b64_json`)."""

    def decode() -> list[InputItem]:
        inputs = [decode_image(body["image"], "image")]
        if body["mask"]:
            inputs.append(decode_image(body["mask"], "mask", role="mask_image"))
        return inputs

    size = len(body["image"]) + len(body["mask"] or "")
    inputs = await off_loop_if_big(size, decode)
    edit = {"prompt": body["prompt"], "model": body["model"], "stream": False, "n": 1}
    edit.update(size=None, response_format="b64_json")
    return await openai_media.images_answer(request, "i2i", edit, inputs)
