"""The OpenAI-compatible media routes under /v1/: images and audio.

Images come back as `b64_json` by default; `response_format: "url"` gives a `data:` URL (the
server hosts no image files). `n` images are asked of the binding in one call; when it makes
fewer, it is asked again for the rest until there are `n`, within the request's slots (its
place in the model's queue, the key's concurrency slot): with the request's `seed`, image i
gets seed + i (so the same request gives the same images), else a fresh random seed.
Extensions beyond OpenAI's shape, for bindings that honour them (see the README): `loras`,
`controlnet` with `controlnet_image` (base64 on generations, a file part on edits) and
`upscale` (edits). Speech is returned in the format the binding makes; asking for another
`response_format` is a 400 naming the one available (WAV of 24 kHz 16-bit mono, OpenAI's raw
rate, can also be sent as `pcm`).
"""

from __future__ import annotations

import dataclasses
import io
import secrets
import time
import wave
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from ...bindings import ChatMessage, InputItem, Output, Result
from ...errors import BackendError, InvalidRequest
from ...httpkit.convert import decode_image, encode_data, image_item
from ...httpkit.endpoint import UploadedFile, endpoint, off_loop_if_big
from ...keys import GENERATION, REGISTRY
from ...openai_names import resolve_model
from ...service.generation import More
from ...service.prepared import Prepared, served_by
from ...service.voices import voice_model
from . import transcripts
from .schemas_media import (
    ImageEditForm,
    ImageGenerationSchema,
    SpeechSchema,
    TranscriptionForm,
    TranslationForm,
)

TAG = "openai"
MODEL_HEADER = "X-Lollms-Model"  # the model that served a media request
routes = web.RouteTableDef()
AUDIO_FORMATS = {
    "mp3": ("audio/mpeg", "audio/mp3"),
    "opus": ("audio/ogg", "audio/opus"),
    "aac": ("audio/aac",),
    "flac": ("audio/flac", "audio/x-flac"),
    "wav": ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"),
    "pcm": ("audio/pcm", "audio/l16"),
}
PCM_SHAPE = (24000, 2, 1)  # OpenAI's pcm: 24 kHz, 16-bit, mono
IMAGE_EXTRAS = (
    "keep_alive",
    "seed",
    "negative_prompt",
    "steps",
    "guidance_scale",
    "strength",
    "quality",
    "style",
    "background",
    "output_format",
    "output_compression",
    "loras",
    "controlnet",
    "upscale",
)


async def _run(
    request: web.Request,
    generation_type: str,
    model: str | None,
    prompt: str | None,
    inputs: Sequence[InputItem] = (),
    parameters: dict[str, Any] | None = None,
    more: More | None = None,
) -> tuple[Prepared, Result]:
    """Resolve the model, build the request and run it to completion (and `more`)."""
    target = await resolve_model(request.app[REGISTRY], generation_type, model)
    service = request.app[GENERATION]
    prepared = await service.prepare(
        face="openai",
        generation_type=generation_type,
        target=target,
        messages=[ChatMessage("user", prompt)] if prompt else [],
        inputs=inputs,
        parameters=parameters or {},
    )
    prepared, result = await service.run(prepared, more)
    return await served_by(prepared, result), result


async def speak(
    request: web.Request, model: str | None, text: str, parameters: dict[str, Any]
) -> tuple[Prepared, Output]:
    """Run text-to-speech; the first audio output (the other faces' speech routes use it)."""
    model = await voice_model(request.app[REGISTRY], model, parameters)
    prepared, result = await _run(request, "tts", model, text, (), parameters)
    return prepared, _outputs(prepared, result, "audio")[0]


async def transcribe_upload(
    request: web.Request, model: str | None, upload: UploadedFile, parameters: dict[str, Any]
) -> tuple[Prepared, str]:
    """Run speech-to-text on one uploaded audio file; its text."""
    audio = _media_input("audio", "input_audio", upload)
    prepared, result = await _run(request, "stt", model, None, [audio], parameters)
    return prepared, _outputs(prepared, result, "text")[0].text


def _outputs(prepared: Prepared, result: Result, kind: str) -> list[Output]:
    """The outputs of one kind; none at all is a backend failure."""
    found = [output for output in result.outputs if output.type == kind]
    if not found:
        name = prepared.target.binding.instance_name
        raise BackendError(f"binding {name!r} returned no {kind}", binding=name)
    return found


@routes.post("/v1/images/generations")
@endpoint("Generate images from a prompt", tag=TAG, body=ImageGenerationSchema,
          media_body=True, generates=True)  # fmt: skip
async def images_generations(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Text-to-image (`tti`); a `controlnet_image` goes to the binding as an input of that role."""
    inputs: list[InputItem] = []
    if body["controlnet_image"] is not None:
        control = body["controlnet_image"]
        role = "controlnet_image"
        inputs.append(await off_loop_if_big(len(control), decode_image, control, role, role))
    return await images_answer(request, "tti", body, inputs)


@routes.post("/v1/images/edits")
@endpoint(
    "Edit images with a prompt (and an optional mask)", tag=TAG, form=ImageEditForm, generates=True
)
async def images_edits(request: web.Request, form: dict[str, Any]) -> web.Response:
    """Image-to-image (`i2i`); the mask goes to the binding as a `mask_image` input."""
    inputs = [_image_upload(image, "image", "input_image") for image in form["image"]]
    if form["mask"] is not None:
        inputs.append(_image_upload(form["mask"], "mask", "mask_image"))
    if form["controlnet_image"] is not None:
        inputs.append(
            _image_upload(form["controlnet_image"], "controlnet_image", "controlnet_image")
        )
    return await images_answer(request, "i2i", form, inputs)


def _image_upload(upload: UploadedFile, param: str, role: str) -> InputItem:
    """An uploaded image as an input (a 415 when it is none), its file name kept."""
    item = image_item(upload.data, param, role)
    return dataclasses.replace(item, metadata={"filename": upload.filename})


def _media_input(kind: str, role: str, upload: UploadedFile) -> InputItem:
    mime = upload.content_type if upload.content_type != "application/octet-stream" else None
    return InputItem(
        kind, role=role, data=upload.data, mime_type=mime, metadata={"filename": upload.filename}
    )


async def images_answer(
    request: web.Request, generation_type: str, body: dict[str, Any], inputs: list[InputItem]
) -> web.Response:
    """The `/v1/images/*` answer for a validated body (the faces' image routes share it)."""
    if body["stream"]:
        raise InvalidRequest(
            "streamed (partial) images are not supported; omit stream", param="stream"
        )
    count = body["n"] or 1
    parameters = {key: body[key] for key in IMAGE_EXTRAS if body.get(key) is not None}
    parameters["n"] = count
    size = body["size"]
    if size and size != "auto":
        width, _, height = size.partition("x")
        parameters.update(width=int(width), height=int(height))
    images: list[Output] = []
    seed = parameters.get("seed")

    async def more(prepared: Prepared, result: Result) -> Prepared | None:
        """The rest of the images, asked again of the target that served, in the same slots."""
        images.extend(_outputs(prepared, result, "image"))
        if len(images) >= count:
            return None
        # image i of a seeded request has seed + i (wrapping past 2**63 - 1), as a binding's
        # own batch gives them
        next_seed = secrets.randbelow(2**31) if seed is None else (seed + len(images)) % 2**63
        extra = {**prepared.request.parameters, "n": count - len(images), "seed": next_seed}
        return dataclasses.replace(
            prepared, request=dataclasses.replace(prepared.request, parameters=extra)
        )

    prepared, _result = await _run(
        request, generation_type, body["model"], body["prompt"], inputs, parameters, more
    )
    as_url = body["response_format"] == "url"
    data = [
        {"url": f"data:{image.mime_type};base64,{encode_data(image.data)}"}
        if as_url
        else {"b64_json": encode_data(image.data)}
        for image in images[:count]
    ]
    output_format = images[0].mime_type.removeprefix("image/")
    answer = {"created": int(time.time()), "data": data, "output_format": output_format}
    return web.json_response({**answer, "model": prepared.target.ref}, headers=_headers(prepared))


def _headers(prepared: Prepared) -> dict[str, str]:
    """The request id, and the model that served (a hard-coded OpenAI name may have been
    served by the default model: `openai_names`); bodies that are JSON also carry `model`."""
    return {"X-Request-Id": prepared.request.request_id, MODEL_HEADER: prepared.target.ref}


@routes.post("/v1/audio/speech")
@endpoint(
    "Speak a text; the body is the audio file",
    tag=TAG,
    body=SpeechSchema,
    binary_response="audio/*",
    generates=True,
)
async def audio_speech(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Text-to-speech (`tts`)."""
    if body["stream_format"] == "sse":
        raise InvalidRequest(
            "stream_format 'sse' is not supported; use 'audio'", param="stream_format"
        )
    voice = body["voice"]
    if isinstance(voice, dict):
        voice = voice.get("id")
    if voice is not None and not isinstance(voice, str):
        raise InvalidRequest('voice must be a string or {"id": string}', param="voice")
    wanted = body["response_format"]
    found = {
        "voice": voice,
        "speed": body["speed"],
        "instructions": body["instructions"],
        "response_format": wanted,
        "keep_alive": body["keep_alive"],
    }
    parameters = {key: value for key, value in found.items() if value is not None}
    model = await voice_model(request.app[REGISTRY], body["model"], parameters)
    prepared, result = await _run(request, "tts", model, body["input"], (), parameters)
    audio = _outputs(prepared, result, "audio")[0]
    data, mime = _audio_as(prepared, audio, wanted)
    return web.Response(body=data, content_type=mime, headers=_headers(prepared))


def _audio_as(prepared: Prepared, audio: Output, wanted: str | None) -> tuple[bytes, str]:
    """The audio in the requested format, or a 400 naming what the binding makes."""
    mime = audio.mime_type.lower()
    made = next((name for name, mimes in AUDIO_FORMATS.items() if mime in mimes), None)
    if wanted is None or wanted == made:
        return audio.data, AUDIO_FORMATS[made][0] if made else audio.mime_type
    name = prepared.target.ref
    if wanted == "pcm" and made == "wav":
        with wave.open(io.BytesIO(audio.data)) as reader:
            shape = (reader.getframerate(), reader.getsampwidth(), reader.getnchannels())
            if shape == PCM_SHAPE:
                return reader.readframes(reader.getnframes()), AUDIO_FORMATS["pcm"][0]
        raise InvalidRequest(  # clients play pcm at 24 kHz: other samples would play wrong
            f"response_format 'pcm' is raw 24 kHz 16-bit mono samples; {name} made WAV of "
            f"{shape[0]} Hz, {8 * shape[1]}-bit, {shape[2]} channel(s) (the server does not "
            "transcode); ask for 'wav'",
            param="response_format",
        )
    available = f"{made!r}" + (" or 'pcm'" if made == "wav" else "") if made else "none"
    raise InvalidRequest(
        f"{name} makes {audio.mime_type} audio; response_format {wanted!r} is not available "
        f"(the server does not transcode); ask for {available}",
        param="response_format",
    )


@routes.post("/v1/audio/transcriptions")
@endpoint("Transcribe an audio file", tag=TAG, form=TranscriptionForm, generates=True)
async def audio_transcriptions(request: web.Request, form: dict[str, Any]) -> web.Response:
    """Speech-to-text (`stt`)."""
    if form["stream"]:
        raise InvalidRequest("streamed transcription is not supported; omit stream", param="stream")
    return await _transcribe(request, form, "transcribe")


@routes.post("/v1/audio/translations")
@endpoint(
    "Translate an audio file into English text", tag=TAG, form=TranslationForm, generates=True
)
async def audio_translations(request: web.Request, form: dict[str, Any]) -> web.Response:
    """Speech-to-text with `task = "translate"` passed to the binding."""
    return await _transcribe(request, form, "translate")


async def _transcribe(request: web.Request, form: dict[str, Any], task: str) -> web.Response:
    if form["response_format"] == "diarized_json":  # OpenAI's shape needs a speaker per segment
        raise InvalidRequest(
            "response_format 'diarized_json' is not supported: no binding here tells speakers "
            "apart; ask for verbose_json (segments with times)",
            param="response_format",
        )
    language = form.get("language")
    found = {"language": language, "temperature": form["temperature"], "task": task,
             "keep_alive": form["keep_alive"]}  # fmt: skip
    parameters = {key: value for key, value in found.items() if value is not None}
    if "word" in (form.get("timestamp_granularities") or []):
        parameters["word_timestamps"] = True  # asked of this request, whatever the default
    audio = _media_input("audio", "input_audio", form["file"])
    prepared, result = await _run(
        request, "stt", form["model"], form["prompt"], [audio], parameters
    )
    output = _outputs(prepared, result, "text")[0]
    text = output.text
    headers = _headers(prepared)
    response_format = form["response_format"] or "json"
    if response_format == "text":
        return web.Response(text=text, content_type="text/plain", headers=headers)
    duration = transcripts.duration(output, form["file"].data)
    usage = {"type": "duration", "seconds": duration}  # what OpenAI reports for whisper-1
    if response_format == "json":
        answer = {"text": text, "model": prepared.target.ref, "usage": usage}
        return web.json_response(answer, headers=headers)
    segments = transcripts.segments(output, text, duration, form["temperature"] or 0.0)
    if response_format in ("srt", "vtt"):
        body = transcripts.subtitles(segments, vtt=response_format == "vtt")
        return web.Response(text=body, content_type="text/plain", headers=headers)
    verbose: dict[str, Any] = {
        "task": task,
        "language": language or output.metadata.get("language") or "unknown",
        "duration": duration,
        "text": text,
        "segments": segments,
        "model": prepared.target.ref,
        "usage": usage,
    }
    if "word" in (form.get("timestamp_granularities") or []) and "words" in output.metadata:
        verbose["words"] = list(output.metadata["words"])
    return web.json_response(verbose, headers=headers)
