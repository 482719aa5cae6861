"""The older lollms-webui routes `lollms-client` still calls: its `lollms_webui` LLM binding
(`/lollms_generate`, tokenize, embed, models) and its `lollms` TTS and STT bindings
(`/text2Audio`, `/list_voices`, `/audio2text`, `/list_stt_models`).

Answers keep lollms-webui's shapes (a generation is plain text; a stream is plain text chunks).
No file is ever written on the server: `/text2Audio` returns the audio in its body instead.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import Any

from aiohttp import web

from ...bindings import ChatMessage, InputItem, closing_stream
from ...errors import BackendError, LollmsError
from ...httpkit.body import UploadedFile
from ...httpkit.burst import BurstResponse, ClientGone
from ...httpkit.convert import decode_data, decode_image, encode_data
from ...httpkit.endpoint import endpoint, off_loop_if_big
from ...keys import CONFIG, GENERATION, PERSONALITIES, REGISTRY
from ...listing import gather_models
from ...openai_names import resolve_model
from ...service.generation_stream import open_stream
from ...service.prepared import Prepared
from ..openai import media as openai_media
from .generate import token_ids, token_text
from .schemas_compat import (
    Audio2TextSchema,
    Text2AudioSchema,
    WebuiDetokenizeSchema,
    WebuiEmbedSchema,
    WebuiGenerateSchema,
    WebuiTokenizeSchema,
)

log = logging.getLogger(__name__)
TAG = "lollms-webui"
routes = web.RouteTableDef()
#: lollms-webui's generation fields -> ours.
PARAMETERS = {
    "n_predict": "max_tokens",
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "seed": "seed",
}


@routes.post("/lollms_generate")
@endpoint("Generate text from a raw prompt (lollms-webui); plain text, streamed when asked",
          tag=TAG, body=WebuiGenerateSchema, streams=True, generates=True)  # fmt: skip
async def lollms_generate(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """The prompt goes to the model as it is (lollms-webui's `!@>` markup included)."""
    return await _generate(request, body, [ChatMessage("user", body["prompt"])], raw=True)


@routes.post("/lollms_generate_with_images")
@endpoint("Generate text about base64 images (lollms-webui); plain text",
          tag=TAG, body=WebuiGenerateSchema, streams=True, media_body=True,
          generates=True)  # fmt: skip
async def lollms_generate_with_images(
    request: web.Request, body: dict[str, Any]
) -> web.StreamResponse:
    """The prompt and its images as one user message to a vision model."""
    images = await off_loop_if_big(
        sum(len(i) for i in body["images"] or []), _images, body["images"] or []
    )
    message = ChatMessage("user", body["prompt"], images=tuple(images))
    return await _generate(request, body, [message], raw=not images)


def _images(values: list[str]) -> list[InputItem]:
    return [decode_image(value, f"images[{i}]") for i, value in enumerate(values)]


async def _generate(
    request: web.Request, body: dict[str, Any], messages: list[ChatMessage], *, raw: bool
) -> web.StreamResponse:
    target = await resolve_model(request.app[REGISTRY], "ttt", body["model_name"])
    if any(m.images for m in messages):
        target.require("vision", "read images", "images")
    parameters = {
        ours: body[theirs] for theirs, ours in PARAMETERS.items() if body[theirs] is not None
    }
    personality = body["personality"] if isinstance(body["personality"], str) else None
    service = request.app[GENERATION]
    prepared = await service.prepare(
        face="lollms",
        generation_type="ttt",
        target=target,
        messages=messages,
        parameters=parameters,
        personality=personality,
        raw_prompt=raw,
    )
    if body["stream"]:
        return await _stream_text(request, prepared)
    result = await service.generate(prepared)
    text = next((o.text for o in result.outputs if o.type == "text"), "")
    return web.Response(text=text, headers=_ids(prepared))


def _ids(prepared: Prepared) -> dict[str, str]:
    return {"X-Request-Id": prepared.request.request_id}


async def _stream_text(request: web.Request, prepared: Prepared) -> web.StreamResponse:
    """Plain text chunks; an error before the first is an HTTP error, a later one ends the
    body (plain text has no place for it: it is logged)."""
    async with closing_stream(request.app[GENERATION].stream(prepared)) as chunks:
        chunk = (await open_stream(chunks, prepared)).first
        response = BurstResponse(
            headers=_ids(prepared), stall_s=request.app[CONFIG].request_timeout_s
        )
        response.content_type = "text/plain"
        response.charset = "utf-8"
        await response.prepare(request)
        try:
            while chunk is not None:  # read in place: no helper frame per chunk
                if chunk.type == "chunk" and chunk.content:
                    await response.send(chunk.content.encode("utf-8"))
                chunk = await anext(chunks, None)
        except (ClientGone, LollmsError) as exc:
            log.warning("lollms_generate stream %s ended: %s", prepared.request.request_id, exc)
            return response
    with suppress(ConnectionError):
        await response.write_eof()
    return response


@routes.post("/lollms_tokenize")
@endpoint("Token ids of a text under the default model (lollms-webui)", tag=TAG,
          body=WebuiTokenizeSchema)  # fmt: skip
async def lollms_tokenize(request: web.Request, body: dict[str, Any]) -> web.Response:
    """A JSON list of token ids (`return_named` is not served: ids only)."""
    target = await resolve_model(request.app[REGISTRY], "ttt", None)
    return web.json_response((await token_ids(request, target, body["prompt"]))[1])


@routes.post("/lollms_detokenize")
@endpoint("Text of token ids under the default model (lollms-webui)", tag=TAG,
          body=WebuiDetokenizeSchema)  # fmt: skip
async def lollms_detokenize(request: web.Request, body: dict[str, Any]) -> web.Response:
    """A JSON string."""
    target = await resolve_model(request.app[REGISTRY], "ttt", None)
    return web.json_response((await token_text(request, target, body["tokens"]))[1])


@routes.post("/lollms_embed")
@endpoint("Embedding vector of a text under the default model (lollms-webui)", tag=TAG,
          body=WebuiEmbedSchema)  # fmt: skip
async def lollms_embed(request: web.Request, body: dict[str, Any]) -> web.Response:
    """`{vector}`."""
    target = await resolve_model(request.app[REGISTRY], "ttt", None)
    target.require("embeddings", "make embeddings", "text")
    target, vectors = await request.app[GENERATION].model_call(
        target,
        lambda served: served.binding.embed([body["text"]], served.model),
        texts=[body["text"]],
        needs="embeddings",
    )
    binding = target.binding
    if len(vectors) != 1:
        raise BackendError(
            f"binding {binding.instance_name!r} returned {len(vectors)} vectors for 1 input",
            binding=binding.instance_name,
        )
    return web.json_response({"vector": [float(v) for v in vectors[0]], "model": target.ref})


@routes.get("/list_models")
@endpoint("Text model ids, `<instance>/<model>` (lollms-webui)", tag=TAG)
async def list_models(request: web.Request) -> web.Response:
    """A JSON list of model ids."""
    return web.json_response(await _model_ids(request, "ttt"))


async def _model_ids(request: web.Request, generation_type: str) -> list[str]:
    bindings = [b for b in request.app[REGISTRY] if generation_type in b.capabilities]
    return [
        f"{item.name}/{m.name}"
        for item in await gather_models(bindings)
        for m in item.models
        if not m.capabilities or generation_type in m.capabilities
    ]


@routes.get("/list_mounted_personalities")
@endpoint("Installed personality names (lollms-webui)", tag=TAG)
async def list_mounted_personalities(request: web.Request) -> web.Response:
    """`{status, personalities: [name...]}`."""
    names = sorted(request.app[PERSONALITIES].by_name)
    return web.json_response({"status": True, "personalities": names})


@routes.post("/text2Audio")
@endpoint("Speak a text; the audio comes back base64 in the body (lollms-webui)", tag=TAG,
          body=Text2AudioSchema, generates=True)  # fmt: skip
async def text2audio(request: web.Request, body: dict[str, Any]) -> web.Response:
    """`{status, audio, mime_type, model}` (`voice` is a tts model id or a voice name)."""
    parameters: dict[str, Any] = {}
    model = body["voice"] if body["voice"] and "/" in body["voice"] else None
    if body["voice"] and model is None and body["voice"] != "main_voice":
        parameters["voice"] = body["voice"]
    prepared, audio = await openai_media.speak(request, model, body["text"], parameters)
    encoded = await off_loop_if_big(len(audio.data), encode_data, audio.data)
    reply = {"status": True, "audio": encoded, "mime_type": audio.mime_type}
    return web.json_response({**reply, "model": prepared.target.ref}, headers=_ids(prepared))


@routes.get("/list_voices")
@endpoint("Text-to-speech model ids, usable as voices (lollms-webui)", tag=TAG)
async def list_voices(request: web.Request) -> web.Response:
    """`{voices: [id...]}`."""
    return web.json_response({"voices": await _model_ids(request, "tts")})


@routes.post("/audio2text")
@endpoint("Transcribe base64 audio (lollms-webui)", tag=TAG, body=Audio2TextSchema,
          media_body=True, generates=True)  # fmt: skip
async def audio2text(request: web.Request, body: dict[str, Any]) -> web.Response:
    """`{text, model}`."""
    data, mime = await off_loop_if_big(
        len(body["audio_data"]), decode_data, body["audio_data"], "audio_data"
    )
    upload = UploadedFile(
        body["file_name"] or "audio.wav", mime or "application/octet-stream", data
    )
    parameters = {"language": body["language"]} if body["language"] else {}
    model = body["model"] if body["model"] not in (None, "lollms") else None
    prepared, text = await openai_media.transcribe_upload(request, model, upload, parameters)
    return web.json_response({"text": text, "model": prepared.target.ref}, headers=_ids(prepared))


@routes.get("/list_stt_models")
@endpoint("Speech-to-text model ids (lollms-webui)", tag=TAG)
async def list_stt_models(request: web.Request) -> web.Response:
    """`{models: [id...]}`."""
    return web.json_response({"models": await _model_ids(request, "stt")})
