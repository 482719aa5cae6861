"""Images, speech and transcription over the OpenAI API (`/images`, `/audio` routes)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import aiohttp

from lollms_server.sdk import (
    BackendError,
    GenerationRequest,
    InputItem,
    InvalidRequest,
    Output,
    Upstream,
    sniff,
    sniff_image,
)

IMAGE_PASSED_ON = (
    "quality",
    "style",
    "background",
    "output_format",
    "output_compression",
    "seed",
    "negative_prompt",
    "steps",
    "guidance_scale",
    "strength",
)
EXTENSIONS = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/mpeg": "mp3",
    "audio/ogg": "ogg",
    "audio/flac": "flac",
    "audio/webm": "webm",
    "audio/mp4": "m4a",
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
}


def image_mime(data: bytes, declared: str | None = None) -> str:
    """The mime type of image bytes from their magic, else `declared`, else PNG."""
    return sniff_image(data) or declared or "image/png"


def image_fields(request: GenerationRequest) -> dict[str, Any]:
    """The fields shared by image generations and edits."""
    params = request.parameters
    body: dict[str, Any] = {"prompt": request.prompt, "response_format": "b64_json"}
    if isinstance(params.get("n"), int):
        body["n"] = params["n"]
    if params.get("width") and params.get("height"):
        body["size"] = f"{params['width']}x{params['height']}"
    elif isinstance(params.get("size"), str):
        body["size"] = params["size"]
    body.update({key: params[key] for key in IMAGE_PASSED_ON if params.get(key) is not None})
    return body


def images_of(upstream: Upstream, answer: Any, output_format: str | None) -> list[Output]:
    """The images of an `/images/*` answer (base64 or data: URLs; the server never fetches)."""
    items = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(items, list) or not items:
        raise BackendError(f"{upstream.label} returned no images", binding=upstream.instance)
    declared = f"image/{output_format}" if output_format else None
    outputs = []
    for item in items:
        encoded = item.get("b64_json") if isinstance(item, dict) else None
        url = item.get("url") if isinstance(item, dict) else None
        if not encoded and isinstance(url, str) and url.startswith("data:"):
            encoded = url.partition(",")[2]
        if not encoded:
            raise BackendError(
                f"{upstream.label} returned an image URL instead of b64_json data; "
                "lollms-server does not fetch remote URLs",
                binding=upstream.instance,
            )
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BackendError(
                f"{upstream.label} returned invalid base64", binding=upstream.instance
            ) from exc
        metadata = {"revised_prompt": item["revised_prompt"]} if item.get("revised_prompt") else {}
        outputs.append(
            Output("image", data=data, mime_type=image_mime(data, declared), metadata=metadata)
        )
    return outputs


async def generate_images(upstream: Upstream, request: GenerationRequest) -> list[Output]:
    """`tti`: POST /images/generations."""
    body = {"model": request.model, **image_fields(request)}
    answer = await upstream.post_json("/images/generations", body)
    return images_of(upstream, answer, request.parameters.get("output_format"))


async def edit_images(upstream: Upstream, request: GenerationRequest) -> list[Output]:
    """`i2i`: POST /images/edits (multipart: the images, an optional mask, the prompt)."""
    images = [i for i in request.inputs if i.type == "image" and i.role != "mask_image"]
    masks = request.inputs_with_role("mask_image")
    if not images:
        raise InvalidRequest("an image edit needs an input image (role input_image)")
    fields = {"model": request.model, **image_fields(request)}

    def form() -> aiohttp.FormData:
        data = aiohttp.FormData()
        for key, value in fields.items():
            data.add_field(key, str(value))
        field = "image" if len(images) == 1 else "image[]"
        for index, image in enumerate(images):
            add_file(data, field, image, f"image{index}")
        if masks:
            add_file(data, "mask", masks[0], "mask")
        return data

    answer = await upstream.post_json("/images/edits", form=form)
    return images_of(upstream, answer, request.parameters.get("output_format"))


async def speak(upstream: Upstream, request: GenerationRequest, default_voice: str) -> Output:
    """`tts`: POST /audio/speech; the audio comes back in the server's format."""
    params = request.parameters
    body: dict[str, Any] = {
        "model": request.model,
        "input": request.prompt,
        "voice": params.get("voice") or default_voice,
    }
    for key in ("response_format", "speed", "instructions"):
        if params.get(key) is not None:
            body[key] = params[key]
    data, content_type = await upstream.post_for_bytes("/audio/speech", body)
    if not data:
        raise BackendError(f"{upstream.label} returned empty audio", binding=upstream.instance)
    mime = content_type if content_type.startswith("audio/") else audio_mime(data)
    return Output("audio", data=data, mime_type=mime)


async def transcribe(upstream: Upstream, request: GenerationRequest) -> Output:
    """`stt`: POST /audio/transcriptions (or /translations when `task` is translate)."""
    audio = next((item for item in request.inputs if item.type == "audio"), None)
    if audio is None:
        raise InvalidRequest("transcription needs an audio input (role input_audio)")
    params = request.parameters
    fields = {"model": request.model, "response_format": "json"}
    for key in ("language", "temperature"):
        if params.get(key) is not None:
            fields[key] = str(params[key])
    if request.prompt:
        fields["prompt"] = request.prompt
    path = "/audio/translations" if params.get("task") == "translate" else "/audio/transcriptions"
    if path.endswith("translations"):
        fields.pop("language", None)

    def form() -> aiohttp.FormData:
        data = aiohttp.FormData()
        for key, value in fields.items():
            data.add_field(key, value)
        add_file(data, "file", audio, "audio")
        return data

    answer = await upstream.post_json(path, form=form)
    text = answer.get("text") if isinstance(answer, dict) else None
    if not isinstance(text, str):
        raise BackendError(f"{upstream.label} returned no transcript", binding=upstream.instance)
    metadata = {k: answer[k] for k in ("language", "duration", "segments") if k in answer}
    return Output("text", text=text, metadata=metadata)


def add_file(form: aiohttp.FormData, field: str, item: InputItem, stem: str) -> None:
    """Add an input as a file part named after its mime type."""
    mime = item.mime_type or ("image/png" if item.type == "image" else "audio/wav")
    filename = str(item.metadata.get("filename") or f"{stem}.{EXTENSIONS.get(mime, 'bin')}")
    form.add_field(field, item.data, filename=filename, content_type=mime)


def audio_mime(data: bytes) -> str:
    """The mime type of audio bytes from their magic."""
    found = sniff(data)
    return found if found and not found.startswith("image/") else "application/octet-stream"
