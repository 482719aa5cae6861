"""marshmallow schemas of the lollms API request bodies and queries, and shared fields."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import (
    INCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates_schema,
)

from ...bindings import GENERATION_TYPES
from ...httpkit.shapes import (
    IMAGE_SIDE,
    NAME,
    ControlNetSchema,
    IpAdapterSchema,
    LoraChoiceSchema,
    StrictSchema,
    StringOrList,
)
from ...ignored_fields import ForgivingSchema
from ...lean_schema import LeanSchema
from ...ollama_wire import KeepAliveSeconds
from ...request_limits import CappedList
from ...security.api_keys import ADMITS_NOTHING
from ...whole_number import Whole
from .inputs import lollms_inputs

EXTRA_PARAMETER = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class ParametersSchema(LeanSchema):
    """Generation parameters: known ones checked; others passed to the binding as extras."""

    class Meta:
        unknown = INCLUDE

    temperature = fields.Float(validate=validate.Range(0, 5))
    top_p = fields.Float(validate=validate.Range(0, 1))
    top_k = Whole(validate=validate.Range(0, 100_000))
    max_tokens = Whole(validate=validate.Range(1, 10_000_000))
    repeat_penalty = fields.Float(validate=validate.Range(0, 10))
    presence_penalty = fields.Float(validate=validate.Range(-2, 2))
    frequency_penalty = fields.Float(validate=validate.Range(-2, 2))
    seed = Whole(validate=validate.Range(-(2**63), 2**63 - 1))
    stop = StringOrList(max_items=16)
    width = Whole(validate=IMAGE_SIDE)
    height = Whole(validate=IMAGE_SIDE)
    steps = Whole(validate=validate.Range(1, 1000))
    guidance_scale = fields.Float(validate=validate.Range(0, 100))
    strength = fields.Float(validate=validate.Range(0, 1))
    negative_prompt = fields.String(validate=validate.Length(max=100_000))
    n = Whole(validate=validate.Range(1, 16))
    voice = fields.String(validate=NAME)
    speed = fields.Float(validate=validate.Range(0.25, 4))
    response_format = fields.String(validate=validate.Length(max=32))
    keep_alive = KeepAliveSeconds()  # seconds or an Ollama duration, as on the other faces
    max_steps = Whole(
        validate=validate.Range(1, 100),
        metadata={"description": "most model turns of the function-calling loop"},
    )
    language = fields.String(validate=validate.Length(max=32))
    loras = fields.List(fields.Nested(LoraChoiceSchema), validate=validate.Length(max=8))
    controlnet = fields.Nested(ControlNetSchema)
    ip_adapter = fields.Nested(IpAdapterSchema)

    @validates_schema(pass_original=True)
    def _check_extras(self, data: dict[str, Any], original: Any, **kwargs: Any) -> None:
        known = set(self.fields)
        for key, value in (original or {}).items():
            if key in known:
                continue
            if not EXTRA_PARAMETER.match(str(key)):
                raise ValidationError("extra parameter names are lowercase identifiers", key)
            if not _is_plain_json(value):
                raise ValidationError(
                    "extra parameters are numbers, strings, booleans or lists", key
                )


def _is_plain_json(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return (
        isinstance(value, list)
        and len(value) <= 64
        and all(v is None or isinstance(v, (bool, int, float, str)) for v in value)
    )


INPUT_TYPES = ("text", "image", "audio", "video", "document")
OPTIONAL_BODY_FIELDS = ("parameters", "functions", "personality", "binding_name", "model_name")


def _drop_nulls(data: Any, names: tuple[str, ...]) -> Any:
    """Upstream's `Optional[...]` fields: null means absent (the default applies)."""
    if isinstance(data, dict) and any(data.get(n, 0) is None for n in names):
        return {k: v for k, v in data.items() if not (k in names and v is None)}
    return data


class InputDataSchema(ForgivingSchema):
    """One item of `input_data`: text, or base64 (or a data: URL) for media; a `document` is
    text unless it is a data: URL or names a non-text `mime_type`."""

    type = fields.String(required=True, validate=validate.OneOf(INPUT_TYPES))
    role = fields.String(load_default="user_prompt", validate=validate.Length(min=1, max=64))
    data = fields.String(required=True)
    mime_type = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=128))
    metadata = fields.Dict(keys=fields.String(), load_default=dict)

    @pre_load
    def _null_metadata(self, data: Any, **kwargs: Any) -> Any:
        return _drop_nulls(data, ("metadata", "role"))


class GenerateSchema(ForgivingSchema):
    """`POST /api/v1/generate` (upstream's GenerateRequest, `text_prompt` included)."""

    input_data = CappedList(
        fields.Nested(InputDataSchema),
        cap="max_list_items",
        required=True,
        validate=validate.Length(min=1),
    )
    text_prompt = fields.String(
        load_only=True,
        allow_none=True,
        metadata={"description": "deprecated: becomes the first input_data item (user_prompt)"},
    )
    personality = fields.String(load_default=None, allow_none=True, validate=NAME)
    binding_name = fields.String(load_default=None, allow_none=True, validate=NAME)
    model_name = fields.String(load_default=None, allow_none=True, validate=NAME)
    generation_type = fields.String(load_default="ttt", validate=validate.OneOf(GENERATION_TYPES))
    stream = fields.Boolean(load_default=False)
    parameters = fields.Nested(ParametersSchema, load_default=dict)
    functions = CappedList(fields.String(validate=NAME), cap=512, load_default=list)

    @pre_load
    def _upstream_forms(self, data: Any, **kwargs: Any) -> Any:
        """`text_prompt` becomes the first `user_prompt` item, as upstream does; nulls of
        optional fields mean absent."""
        data = _drop_nulls(data, OPTIONAL_BODY_FIELDS)
        if not isinstance(data, dict) or not data.get("text_prompt"):
            return data
        items = data.get("input_data")
        items = list(items) if isinstance(items, list) else []
        prompt = {"type": "text", "role": "user_prompt", "data": data["text_prompt"]}
        return {**data, "input_data": [prompt, *items]}

    @validates_schema
    def _one_text_answer(self, data: dict[str, Any], **kwargs: Any) -> None:
        """`parameters.n` counts images; a text generation gives one answer (a binding would
        ignore n, so the caller would get one where it asked for several)."""
        n = (data.get("parameters") or {}).get("n")
        if data.get("generation_type", "ttt") == "ttt" and isinstance(n, int) and n > 1:
            raise ValidationError(
                "n counts images: a text generation gives one answer (ask n times)", "parameters"
            )

    @post_load
    def _typed_inputs(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """`input_data` as chat messages and media inputs (a bad base64 item is a 400)."""
        messages, inputs = lollms_inputs(data.pop("input_data"))
        return {**data, "messages": messages, "inputs": inputs}


class TargetSchema(ForgivingSchema):
    """Optional instance and model of tokenizer requests."""

    binding_name = fields.String(load_default=None, allow_none=True, validate=NAME)
    model_name = fields.String(load_default=None, allow_none=True, validate=NAME)


class TokenizeSchema(TargetSchema):
    """`POST /api/v1/tokenize` and `count_tokens`."""

    text = fields.String(required=True)
    add_bos = fields.Boolean(
        load_default=False, metadata={"description": "prepend the model's BOS token, if it has one"}
    )
    add_eos = fields.Boolean(
        load_default=False, metadata={"description": "append the model's EOS token, if it has one"}
    )


class DetokenizeSchema(TargetSchema):
    """`POST /api/v1/detokenize`."""

    tokens = CappedList(Whole(), cap="max_token_ids", required=True)


class ModelInfoQuerySchema(ForgivingSchema):
    """`GET /api/v1/get_model_info/{instance}[?model_name=]` (absent: the default model)."""

    model_name = fields.String(load_default=None, validate=NAME)


class ListingQuerySchema(ForgivingSchema):
    """`?format=lollms-server`: this server's own shape where upstream's cannot carry it."""

    format = fields.String(load_default=None, validate=validate.OneOf(["lollms-server"]))


class OutputSchema(Schema):
    """One item of a generation's `output`."""

    type = fields.String()
    data = fields.String(metadata={"description": "text, or base64 for binary media"})
    mime_type = fields.String()
    thoughts = fields.String(allow_none=True)
    metadata = fields.Dict()


class GenerateResponseSchema(Schema):
    """The response of a non-streamed `generate`."""

    personality = fields.String(allow_none=True)
    request_id = fields.String()
    output = fields.List(fields.Nested(OutputSchema))
    execution_time = fields.Float()


class HealthSchema(Schema):
    """`GET /api/v1/health`."""

    status = fields.String()
    version = fields.String()
    api_key_required = fields.Boolean()
    plugin_errors = fields.Dict()


class KeyCreateSchema(StrictSchema):
    """`POST /api/v1/keys`."""

    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    role = fields.String(load_default="user", validate=validate.OneOf(["admin", "user"]))
    expires_in_days = fields.Float(
        load_default=None, allow_none=True, validate=validate.Range(0.0001, 36500)
    )
    allowed_bindings = CappedList(
        fields.String(validate=NAME),
        cap=1024,
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, error=ADMITS_NOTHING),
    )
    allowed_models = CappedList(
        fields.String(validate=NAME),
        cap=1024,
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, error=ADMITS_NOTHING),
    )
    rpm = Whole(load_default=None, allow_none=True, validate=validate.Range(1, 10**9))
    tpm = Whole(load_default=None, allow_none=True, validate=validate.Range(1, 10**9))
    max_concurrent = Whole(load_default=None, allow_none=True, validate=validate.Range(1, 10**6))


class AuditQuerySchema(StrictSchema):
    """`GET /api/v1/audit` query."""

    limit = Whole(load_default=100, validate=validate.Range(1, 1000))
    before_id = Whole(load_default=None, allow_none=True, validate=validate.Range(1, 2**62))
    event = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    key_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))


class ModelActionSchema(StrictSchema):
    """`POST /api/v1/load_model` and `unload_model`."""

    binding_name = fields.String(required=True, validate=NAME)
    model_name = fields.String(required=True, validate=NAME)


class ReloadSchema(StrictSchema):
    """`POST /api/v1/reload_personalities`: an empty JSON object."""
