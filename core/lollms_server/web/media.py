"""Image, speech and transcription playgrounds.

Images stream over SSE like chat answers (progress from the binding's `info` chunks, the image
in the final `done` partial); speech and transcription answer the POST directly. Without
JavaScript every form posts to the same URL and gets the whole page with the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from ..bindings import ChatMessage, InputItem, Output, Result
from ..errors import BackendError
from ..httpkit.body import UploadedFile
from ..keys import GENERATION, REGISTRY, WEB_STREAMS
from ..listing import gather_models
from ..registry import Target
from ..security.auth import requires
from ..service.prepared import Prepared, served_by
from ..service.voices import voice_model
from .catalog import choices, offers_default
from .forms import ImageForm, SpeechForm, TranscribeForm, read_page_form
from .render import is_htmx, page_handler, render

routes = web.RouteTableDef()
IMAGE_PARAMETERS = ("negative_prompt", "width", "height", "steps", "seed", "strength")


async def _resolve(request: web.Request, generation_type: str, ref: str | None) -> Target:
    instance, _, model = (ref or "").partition("/")
    return await request.app[REGISTRY].resolve(generation_type, instance or None, model or None)


async def _prepare(
    request: web.Request,
    generation_type: str,
    target: Target,
    prompt: str | None,
    inputs: Sequence[InputItem] = (),
    parameters: dict[str, Any] | None = None,
) -> Prepared:
    return await request.app[GENERATION].prepare(
        face="web",
        generation_type=generation_type,
        target=target,
        messages=[ChatMessage("user", prompt)] if prompt else [],
        inputs=inputs,
        parameters=parameters or {},
    )


def _outputs(prepared: Prepared, result: Result, kind: str) -> list[Output]:
    found = [o for o in result.outputs if o.type == kind]
    if not found:
        name = prepared.target.binding.instance_name
        raise BackendError(f"binding {name!r} returned no {kind}", binding=name)
    return found


@routes.get("/playground/image", name="image")
@requires("user")
@page_handler
async def image_page(request: web.Request) -> web.Response:
    """The image playground."""
    return await render(request, "image.html", "_image.html", await _image_context(request, {}))


async def _image_context(request: web.Request, form: dict[str, Any]) -> dict[str, Any]:
    registry = request.app[REGISTRY]
    groups = choices(await gather_models(registry), "tti", "i2i")
    offer_default = await offers_default(registry, groups, "tti")
    return {"form": form, "choices": groups, "offer_default": offer_default, "result": None}


@routes.post("/playground/image")
@requires("user", generates=True)
@page_handler
async def image_generate(request: web.Request) -> web.Response:
    """Text to image, or image to image when an image is uploaded; streamed with htmx."""
    form = await read_page_form(request, ImageForm)
    upload = form["image"]
    generation_type = "i2i" if upload is not None else "tti"
    target = await _resolve(request, generation_type, form["model"])
    roles = {"image": "input_image", "control_image": "controlnet_image"}
    roles["style_image"] = "style_reference"
    inputs = [_image_input(form[field], role) for field, role in roles.items() if form[field]]
    parameters = {key: form[key] for key in IMAGE_PARAMETERS if form[key] is not None}
    parameters.update(_workflow_parameters(form))
    prepared = await _prepare(request, generation_type, target, form["prompt"], inputs, parameters)
    info = {"prompt": form["prompt"], "generation_type": generation_type, "seed": form["seed"]}
    if is_htmx(request):
        entry = request.app[WEB_STREAMS].add(prepared, "image", **info)
        context = {"stream_id": entry.id, "target": target.ref, **info}
        return await render(request, "image.html", "_image_stream.html", context)
    result = await request.app[GENERATION].generate(prepared)
    kept = {k: v for k, v in form.items() if k not in ("image", "control_image", "style_image")}
    if form["loras"]:
        kept["loras"] = ", ".join(f"{lora['name']}:{lora['scale']:g}" for lora in form["loras"])
    context = await _image_context(request, kept)
    context["result"] = {
        **info,
        "outputs": _outputs(prepared, result, "image"),
        "target": target.ref,
        "elapsed_s": prepared.elapsed_s,
    }
    return await render(request, "image.html", "_image.html", context)


def _image_input(upload: UploadedFile, role: str) -> InputItem:
    mime = upload.content_type if upload.content_type != "application/octet-stream" else None
    metadata = {"filename": upload.filename}
    return InputItem("image", role=role, data=upload.data, mime_type=mime, metadata=metadata)


def _workflow_parameters(form: dict[str, Any]) -> dict[str, Any]:
    """LoRAs, ControlNet, IP-Adapter and upscale parameters of the image form (the binding
    refuses, naming them, what the model cannot take)."""
    found: dict[str, Any] = {}
    if form["loras"]:
        found["loras"] = form["loras"]
    if form["controlnet"]:
        found["controlnet"] = {"model": form["controlnet"]}
        if form["control_scale"] is not None:
            found["controlnet"]["conditioning_scale"] = form["control_scale"]
    if form["style_scale"] is not None:
        found["ip_adapter"] = {"scale": form["style_scale"]}
    if form["upscale"] is not None:
        found["upscale"] = form["upscale"]
    return found


@routes.get("/playground/audio", name="audio")
@requires("user")
@page_handler
async def audio_page(request: web.Request) -> web.Response:
    """Speech and transcription playgrounds."""
    return await render(request, "audio.html", "_audio.html", await _audio_context(request))


async def _audio_context(request: web.Request, **extra: Any) -> dict[str, Any]:
    registry = request.app[REGISTRY]
    listings = await gather_models(registry)
    tts, stt = choices(listings, "tts"), choices(listings, "stt")
    return {
        "tts_choices": tts,
        "stt_choices": stt,
        "tts_default": await offers_default(registry, tts, "tts"),
        "stt_default": await offers_default(registry, stt, "stt"),
        "form": {},
        "speech": None,
        "transcript": None,
        **extra,
    }


@routes.post("/playground/speech")
@requires("user", generates=True)
@page_handler
async def speech(request: web.Request) -> web.Response:
    """Text to speech: an audio player with the result."""
    form = await read_page_form(request, SpeechForm)
    parameters = {"voice": form["voice"]} if form["voice"] else {}
    ref = await voice_model(request.app[REGISTRY], form["model"], parameters)
    target = await _resolve(request, "tts", ref)
    prepared = await _prepare(request, "tts", target, form["text"], (), parameters)
    prepared, result = await request.app[GENERATION].run(prepared)
    prepared = await served_by(prepared, result)  # `voice` may name another voice
    speech = {
        "audio": _outputs(prepared, result, "audio")[0],
        "text": form["text"],
        "target": prepared.target.ref,
        "elapsed_s": prepared.elapsed_s,
    }
    if is_htmx(request):
        return await render(request, "audio.html", "_speech_result.html", {"speech": speech})
    context = await _audio_context(request, speech=speech, form=form)
    return await render(request, "audio.html", "_audio.html", context)


@routes.post("/playground/transcribe")
@requires("user", generates=True)
@page_handler
async def transcribe(request: web.Request) -> web.Response:
    """Speech to text from an uploaded audio file."""
    form = await read_page_form(request, TranscribeForm)
    target = await _resolve(request, "stt", form["model"])
    upload = form["file"]
    mime = upload.content_type if upload.content_type != "application/octet-stream" else None
    audio = InputItem(
        "audio",
        role="input_audio",
        data=upload.data,
        mime_type=mime,
        metadata={"filename": upload.filename},
    )
    parameters = {"language": form["language"]} if form["language"] else {}
    prepared = await _prepare(request, "stt", target, None, [audio], parameters)
    result = await request.app[GENERATION].generate(prepared)
    transcript = {
        "text": _outputs(prepared, result, "text")[0].text,
        "filename": upload.filename,
        "target": target.ref,
        "elapsed_s": prepared.elapsed_s,
    }
    if is_htmx(request):
        return await render(request, "audio.html", "_transcript.html", {"transcript": transcript})
    context = await _audio_context(request, transcript=transcript, form=form)
    return await render(request, "audio.html", "_audio.html", context)
