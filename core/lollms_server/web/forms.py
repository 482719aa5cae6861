"""Page forms: reading urlencoded or multipart bodies and validating them (422 on failure).

Forms post the same fields with or without htmx. An empty text field means "not given" (the
binding's default), a file input left empty means no file. Validation reuses the API's
`validate`, so a page gets the same 422 messages as the API would.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from ..errors import UnsupportedMediaType
from ..httpkit import shapes
from ..httpkit.body import UploadedFile, limits_of, read_body, read_form, read_urlencoded
from ..httpkit.endpoint import schema_instance
from ..httpkit.endpoint import validate as validate_data
from ..whole_number import Whole

MAX_PROMPT = 200_000
URLENCODED = "application/x-www-form-urlencoded"


class Upload(shapes.Upload):
    """A file of a page's multipart form (the message a person reads)."""

    default_error_messages = {"invalid": "choose a file to upload"}


class LoraText(fields.Field[list[dict[str, Any]]]):
    """LoRAs typed as `name:scale, name` (scale 1 when left out), loaded as `[{name, scale}]`."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list[dict[str, Any]]:
        if not isinstance(value, str) or len(value) > 4096:
            raise ValidationError("LoRAs as name:scale, separated by commas")
        loras: list[dict[str, Any]] = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            name, _, scale = part.partition(":")
            try:
                loras.append({"name": name.strip(), "scale": float(scale) if scale else 1.0})
            except ValueError as exc:
                raise ValidationError(f"{part!r}: the scale after ':' must be a number") from exc
            if not name.strip() or len(loras) > 8:
                raise ValidationError("at most 8 LoRAs, each name:scale")
        return loras


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be empty")


class PageForm(Schema):
    """Base of the page forms: unknown fields (buttons and such) are ignored."""

    class Meta:
        unknown = EXCLUDE


class ChatForm(PageForm):
    """The chat playground: target, personality, sampling, conversation so far, new prompt."""

    model = fields.String(load_default=None)
    personality = fields.String(load_default=None)
    system_prompt = fields.String(load_default="", validate=validate.Length(max=MAX_PROMPT))
    prompt = fields.String(required=True, validate=[validate.Length(max=MAX_PROMPT), _not_blank])
    temperature = fields.Float(load_default=None, validate=validate.Range(0, 2))
    max_tokens = Whole(load_default=None, validate=validate.Range(1, 1_000_000))
    top_p = fields.Float(load_default=None, validate=validate.Range(0, 1))
    top_k = Whole(load_default=None, validate=validate.Range(0, 1_000_000))
    seed = Whole(load_default=None, validate=validate.Range(0, 2**63 - 1))
    history_role = fields.List(
        fields.String(validate=validate.OneOf(["user", "assistant"])), load_default=list
    )
    history_text = fields.List(fields.String(), load_default=list)

    @validates_schema
    def _history_pairs(self, data: dict[str, Any], **kwargs: Any) -> None:
        if len(data["history_role"]) != len(data["history_text"]):
            raise ValidationError("every history turn needs a role and a text", "history_text")


class ImageForm(PageForm):
    """The image playground; an uploaded image makes it image-to-image. Workflows: LoRAs, a
    ControlNet with its control image, a style image (IP-Adapter), an upscale factor."""

    model = fields.String(load_default=None)
    prompt = fields.String(required=True, validate=[validate.Length(max=MAX_PROMPT), _not_blank])
    negative_prompt = fields.String(load_default=None, validate=validate.Length(max=MAX_PROMPT))
    width = Whole(load_default=None, validate=validate.Range(8, 8192))
    height = Whole(load_default=None, validate=validate.Range(8, 8192))
    steps = Whole(load_default=None, validate=validate.Range(1, 1000))
    seed = Whole(load_default=None, validate=validate.Range(0, 2**63 - 1))
    strength = fields.Float(load_default=None, validate=validate.Range(0, 1))
    image = Upload(load_default=None)
    loras = LoraText(load_default=None)
    control_image = Upload(load_default=None)
    controlnet = fields.String(load_default=None, validate=validate.Length(max=256))
    control_scale = fields.Float(load_default=None, validate=validate.Range(0, 5))
    style_image = Upload(load_default=None)
    style_scale = fields.Float(load_default=None, validate=validate.Range(0, 2))
    upscale = Whole(load_default=None, validate=validate.Range(1, 16))


class SpeechForm(PageForm):
    """Text to speech."""

    model = fields.String(load_default=None)
    text = fields.String(required=True, validate=[validate.Length(max=MAX_PROMPT), _not_blank])
    voice = fields.String(load_default=None)


class TranscribeForm(PageForm):
    """Speech to text from an uploaded audio file."""

    model = fields.String(load_default=None)
    file = Upload(required=True)
    language = fields.String(load_default=None, validate=validate.Length(max=16))


class ModelActionForm(PageForm):
    """Load or unload one model of an instance."""

    model = fields.String(required=True, validate=_not_blank)


class KeyForm(PageForm):
    """Create an API key from the admin page (comma-separated allow-lists)."""

    name = fields.String(required=True, validate=[validate.Length(max=128), _not_blank])
    role = fields.String(load_default="user", validate=validate.OneOf(["admin", "user"]))
    expires_in_days = fields.Float(load_default=None, validate=validate.Range(0.0001, 36500))
    allowed_bindings = fields.String(load_default="", validate=validate.Length(max=4096))
    allowed_models = fields.String(load_default="", validate=validate.Length(max=4096))
    rpm = Whole(load_default=None, validate=validate.Range(1, 10**9))
    tpm = Whole(load_default=None, validate=validate.Range(1, 10**9))
    max_concurrent = Whole(load_default=None, validate=validate.Range(1, 10**6))


class AuditFilter(PageForm):
    """Filters of the audit page (query string)."""

    event = fields.String(load_default=None, validate=validate.Length(max=64))
    key_id = fields.String(load_default=None, validate=validate.Length(max=64))
    before_id = Whole(load_default=None, validate=validate.Range(1, 2**62))


class LoginForm(PageForm):
    """The key-entry form."""

    key = fields.String(required=True, validate=[validate.Length(max=512), _not_blank])
    next = fields.String(load_default="/")


async def read_page_form(request: web.Request, schema: type[Schema]) -> dict[str, Any]:
    """Read and validate a posted form; a failure raises ValidationFailed (422).

    Only form bodies are accepted (urlencoded or multipart; no body at all is an empty form):
    anything else is a 415, after the body was read so that an oversize one is a 413 first.
    """
    if request.content_type.startswith("multipart/"):
        raw = await read_form(request, media=_takes_files(schema))
    elif request.content_type == URLENCODED:
        raw = await read_urlencoded(request)
    elif not request.body_exists and request.content_type == "application/octet-stream":
        raw = {}  # no body at all (what clients send for a bodiless POST)
    else:
        await read_body(request)
        raise UnsupportedMediaType(
            f"send this page a form ({URLENCODED} or multipart/form-data), "
            f"not {request.content_type}"
        )
    return validate_data(schema, clean(raw, schema), limits_of(request))


def _takes_files(schema: type[Schema]) -> bool:
    return any(isinstance(f, Upload) for f in schema_instance(schema).fields.values())


async def read_action(request: web.Request) -> None:
    """Check the body of a form that posts no fields (a button): a form, or nothing."""
    await read_page_form(request, PageForm)


def clean(raw: dict[str, Any], schema: type[Schema]) -> dict[str, Any]:
    """Drop empty fields and empty file inputs; wrap single values of list fields."""
    list_fields = {n for n, f in schema().fields.items() if isinstance(f, fields.List)}
    data: dict[str, Any] = {}
    for name, value in raw.items():
        if name in list_fields:
            data[name] = value if isinstance(value, list) else [value]
        elif isinstance(value, UploadedFile):
            if value.filename or value.data:
                data[name] = value
        elif isinstance(value, str) and value.strip() == "":
            continue
        else:
            data[name] = value
    return data


def query_text(request: web.Request, name: str, limit: int = 200) -> str:
    """A short text parameter of the query string ('' when absent)."""
    return request.query.get(name, "").strip()[:limit]
