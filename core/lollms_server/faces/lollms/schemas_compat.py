"""marshmallow schemas of the routes `lollms-client` calls outside `/v1` and `/api/v1`.

Its `lollms` binding's routes under `/lollms/v1` and the older lollms-webui routes
(`/lollms_generate`, `/text2Audio`, ...). As upstream did, unknown fields are ignored.
"""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from ...httpkit.shapes import NAME, Upload
from ...ignored_fields import ForgivingSchema
from ...request_limits import CappedList
from ...whole_number import Whole

TEXT = validate.Length(max=10_000_000)
BASE64 = validate.Length(max=200_000_000)


def _opt(field: type[fields.Field[Any]], **kwargs: Any) -> fields.Field[Any]:
    """An optional field where null means absent."""
    return field(load_default=None, allow_none=True, **kwargs)


class LenientSchema(ForgivingSchema):
    """Unknown fields are dropped, as the lollms servers these clients were written for did
    (and named in `X-Lollms-Ignored-Fields`)."""


class ModelTextSchema(LenientSchema):
    """`{model, text}`: tokenize."""

    model = _opt(fields.String, validate=NAME)
    text = fields.String(required=True, validate=TEXT)


class ModelTokensSchema(LenientSchema):
    """`{model, tokens}`: detokenize."""

    model = _opt(fields.String, validate=NAME)
    tokens = CappedList(Whole(), cap="max_token_ids", required=True)


class ModelOnlySchema(LenientSchema):
    """`{model}`: context size."""

    model = _opt(fields.String, validate=NAME)


class ModelsQuerySchema(LenientSchema):
    """`?binding_alias=`: only this instance's models."""

    binding_alias = _opt(fields.String, validate=NAME)


class SpeechSchema(LenientSchema):
    """`/lollms/v1/audio/speech`: OpenAI's fields plus `language`; any `response_format`
    is answered with the audio the binding makes."""

    input = fields.String(required=True, validate=validate.Length(min=1, max=100_000))
    model = _opt(fields.String, validate=NAME)
    voice = _opt(fields.String, validate=validate.Length(max=200))
    speed = _opt(fields.Float, validate=validate.Range(0.25, 4))
    language = _opt(fields.String, validate=validate.Length(max=32))


class ImageEditSchema(LenientSchema):
    """`/lollms/v1/images/edit`: base64 image (and mask), JSON instead of multipart."""

    prompt = fields.String(required=True, validate=validate.Length(min=1, max=100_000))
    image = fields.String(required=True, validate=BASE64)
    mask = _opt(fields.String, validate=BASE64)
    model = _opt(fields.String, validate=NAME)


class TranscriptionForm(LenientSchema):
    """`/lollms/v1/audio/transcriptions` (multipart: `file`, `language`, `model`)."""

    file = Upload(required=True)
    model = _opt(fields.String, validate=NAME)
    language = _opt(fields.String, validate=validate.Length(max=32))


class WebuiGenerateSchema(LenientSchema):
    """`/lollms_generate` and `/lollms_generate_with_images` of lollms-webui."""

    prompt = fields.String(required=True, validate=TEXT)
    model_name = _opt(fields.String, validate=NAME)
    personality = _opt(fields.Raw)
    n_predict = _opt(Whole, validate=validate.Range(1, 10_000_000))
    stream = fields.Boolean(load_default=False, allow_none=True)
    temperature = _opt(fields.Float, validate=validate.Range(0, 2))
    top_k = _opt(Whole, validate=validate.Range(0, 100_000))
    top_p = _opt(fields.Float, validate=validate.Range(0, 1))
    repeat_penalty = _opt(fields.Float, validate=validate.Range(0, 10))
    repeat_last_n = _opt(Whole, validate=validate.Range(0, 100_000))
    seed = _opt(Whole)
    images = _opt(CappedList, cls_or_instance=fields.String(validate=BASE64), cap=16)


class WebuiTokenizeSchema(LenientSchema):
    """`/lollms_tokenize`."""

    prompt = fields.String(required=True, validate=TEXT)
    return_named = fields.Boolean(load_default=False, allow_none=True)


class WebuiDetokenizeSchema(LenientSchema):
    """`/lollms_detokenize`."""

    tokens = CappedList(Whole(), cap="max_token_ids", required=True)
    return_named = fields.Boolean(load_default=False, allow_none=True)


class WebuiEmbedSchema(LenientSchema):
    """`/lollms_embed`."""

    text = fields.String(required=True, validate=validate.Length(min=1, max=1_000_000))


class Text2AudioSchema(LenientSchema):
    """`/text2Audio` (`client_id` and `fn` are accepted and not used: no file is written)."""

    text = fields.String(required=True, validate=validate.Length(min=1, max=100_000))
    voice = _opt(fields.String, validate=validate.Length(max=200))
    client_id = _opt(fields.String)
    fn = _opt(fields.String)


class Audio2TextSchema(LenientSchema):
    """`/audio2text`: base64 audio."""

    audio_data = fields.String(required=True, validate=BASE64)
    model = _opt(fields.String, validate=NAME)
    file_name = _opt(fields.String, validate=validate.Length(max=255))
    language = _opt(fields.String, validate=validate.Length(max=32))
