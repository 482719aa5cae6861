"""marshmallow schemas of the OpenAI-compatible media requests under /v1/: images and audio.

What each route honours, passes on or refuses is listed in `schemas.py`'s docstring.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, fields, post_load, pre_load, validate

from ...httpkit.endpoint import UploadedFile
from ...httpkit.shapes import (
    MAX_IMAGE_SIDE,
    NAME,
    ControlNetSchema,
    LoraChoiceSchema,
    StrictSchema,
    StringOrList,
    Upload,
)
from ...ollama_wire import KeepAliveSeconds
from ...whole_number import Whole
from .schemas import TEXT, _opt

SIZE = re.compile(r"^(auto|[1-9]\d{0,4}x[1-9]\d{0,4})$")


def image_size(value: str) -> None:
    """`WIDTHxHEIGHT` (each side at most MAX_IMAGE_SIDE, as on the lollms API) or `auto`."""
    if not SIZE.match(value):
        raise ValidationError("must be WIDTHxHEIGHT or auto")
    if value != "auto" and max(int(side) for side in value.split("x")) > MAX_IMAGE_SIDE:
        raise ValidationError(f"each side is at most {MAX_IMAGE_SIDE} pixels")


FORM_KEY = re.compile(r"^(?P<outer>\w+)\[(?P<inner>\w+)\]$")


class UploadList(fields.Field[list[UploadedFile]]):
    """One or more file parts of a multipart form (`image` or `image[]`)."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> list[UploadedFile]:
        items = value if isinstance(value, list) else [value]
        if not items or len(items) > 16 or not all(isinstance(v, UploadedFile) for v in items):
            raise ValidationError("must be 1 to 16 file parts (multipart/form-data)")
        return items


def _json_text(value: Any) -> Any:
    """A form sends objects and lists as JSON text: parse it (other values as given)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ValidationError(f"not valid JSON: {exc}") from exc


class LoraList(fields.List[Any]):
    """`loras` (an extension): `[{name, scale}]`, or that list as JSON text in a form."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(fields.Nested(LoraChoiceSchema), validate=validate.Length(max=8), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return super()._deserialize(_json_text(value), attr, data, **kwargs)


class ControlNetField(fields.Nested):
    """`controlnet` (an extension): `{model, conditioning_scale, start, end}`; in a form, as
    JSON text or as `controlnet[model]`... keys."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(ControlNetSchema, **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, *args: Any, **kw: Any
    ) -> Any:
        return super()._deserialize(_json_text(value), attr, data, *args, **kw)


class ImageFieldsSchema(StrictSchema):
    """Fields shared by image generation and edits."""

    prompt = fields.String(required=True, validate=validate.Length(min=1, max=100_000))
    model = _opt(fields.String, validate=NAME)
    n = _opt(Whole, validate=validate.Range(1, 10))
    size = _opt(fields.String, validate=image_size)
    response_format = _opt(fields.String, validate=validate.OneOf(["url", "b64_json"]))
    quality = _opt(fields.String, validate=validate.Length(max=32))
    background = _opt(fields.String, validate=validate.Length(max=32))
    moderation = _opt(fields.String, validate=validate.Length(max=32))
    output_compression = _opt(Whole, validate=validate.Range(0, 100))
    output_format = _opt(fields.String, validate=validate.OneOf(["png", "jpeg", "webp"]))
    partial_images = _opt(Whole, validate=validate.Range(0, 8))
    stream = _opt(fields.Boolean)
    user = _opt(fields.String)
    safety_identifier = _opt(fields.String)
    complexity = _opt(fields.String, validate=validate.Length(max=32))
    frame_count = _opt(Whole, validate=validate.Range(0, 10_000))
    frame_duration_ms = _opt(Whole, validate=validate.Range(0, 100_000))
    svg = _opt(fields.Dict)
    seed = _opt(Whole, validate=validate.Range(0, 2**63 - 1))
    negative_prompt = _opt(fields.String, validate=TEXT)
    steps = _opt(Whole, validate=validate.Range(1, 1000))
    num_inference_steps = _opt(Whole, validate=validate.Range(1, 1000))  # diffusers' name
    guidance_scale = _opt(fields.Float, validate=validate.Range(0, 100))
    loras = LoraList(load_default=None, allow_none=True)
    controlnet = ControlNetField(load_default=None, allow_none=True)
    keep_alive = KeepAliveSeconds(load_default=None, allow_none=True)

    @post_load
    def _one_steps(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """`num_inference_steps` (lollms-client sends diffusers' name) is `steps`."""
        alias = data.pop("num_inference_steps", None)
        if alias is not None and data["steps"] is not None:
            raise ValidationError("send steps or num_inference_steps, not both",
                                  "num_inference_steps")  # fmt: skip
        if alias is not None:
            data["steps"] = alias
        return data


class ImageGenerationSchema(ImageFieldsSchema):
    """`POST /v1/images/generations`; images of the extensions are base64 or data: URLs."""

    style = _opt(fields.String, validate=validate.Length(max=32))
    controlnet_image = _opt(fields.String)


class FormSchema(StrictSchema):
    """A multipart form: `outer[inner]` keys (the SDK's nested objects) folded into dicts."""

    @pre_load
    def _fold_nested(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        folded: dict[str, Any] = {}
        for key, value in data.items():
            match = FORM_KEY.match(key)
            if match and match["outer"] in self.fields:
                outer = folded.setdefault(match["outer"], {})
                if isinstance(outer, dict):
                    outer[match["inner"]] = value
            else:
                folded[key] = value
        return folded


class ImageEditForm(FormSchema, ImageFieldsSchema):
    """`POST /v1/images/edits` (multipart)."""

    image = UploadList(required=True)
    mask = _opt(Upload)
    markup = _opt(Upload)
    input_fidelity = _opt(fields.String, validate=validate.Length(max=32))
    strength = _opt(fields.Float, validate=validate.Range(0, 1))
    controlnet_image = _opt(Upload)
    upscale = _opt(Whole, validate=validate.Range(1, 16))


class SpeechSchema(StrictSchema):
    """`POST /v1/audio/speech`."""

    input = fields.String(required=True, validate=validate.Length(min=1, max=100_000))
    model = _opt(fields.String, validate=NAME)
    voice = _opt(fields.Raw)
    instructions = _opt(fields.String, validate=TEXT)
    response_format = _opt(
        fields.String, validate=validate.OneOf(["mp3", "opus", "aac", "flac", "wav", "pcm"])
    )
    speed = _opt(fields.Float, validate=validate.Range(0.25, 4))
    stream_format = _opt(fields.String, validate=validate.OneOf(["sse", "audio"]))
    keep_alive = KeepAliveSeconds(load_default=None, allow_none=True)


class TranslationForm(FormSchema):
    """`POST /v1/audio/translations` (multipart)."""

    file = Upload(required=True)
    model = _opt(fields.String, validate=NAME)
    prompt = _opt(fields.String, validate=TEXT)
    keep_alive = KeepAliveSeconds(load_default=None, allow_none=True)
    response_format = _opt(
        fields.String,
        validate=validate.OneOf(["json", "text", "srt", "verbose_json", "vtt", "diarized_json"]),
    )
    temperature = _opt(fields.Float, validate=validate.Range(0, 1))


class TranscriptionForm(TranslationForm):
    """`POST /v1/audio/transcriptions` (multipart)."""

    language = _opt(fields.String, validate=validate.Length(max=32))
    timestamp_granularities = StringOrList(
        max_items=2,
        load_default=None,
        allow_none=True,
        validate=validate.ContainsOnly(["word", "segment"]),
    )
    chunking_strategy = _opt(fields.Raw)
    include = StringOrList(load_default=None, allow_none=True)
    stream = _opt(fields.Boolean)
    known_speaker_names = StringOrList(load_default=None, allow_none=True)
    known_speaker_references = StringOrList(load_default=None, allow_none=True)
    keywords = StringOrList(max_items=1000, load_default=None, allow_none=True)
    languages = StringOrList(load_default=None, allow_none=True)
