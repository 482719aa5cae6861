"""Schema pieces every face shares: a name's bounds, string-or-list fields, the strict request
base, the diffusion extras (LoRA, ControlNet, IP-Adapter) and the lollms error body."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from ..lean_schema import LeanSchema
from .body import UploadedFile

NAME = validate.Length(min=1, max=256)
MAX_IMAGE_SIDE = 8192  # pixels, the most an image's width or height may be asked for
IMAGE_SIDE = validate.Range(1, MAX_IMAGE_SIDE)


class StringOrList(fields.Field[list[str]]):
    """A string or a list of strings (OpenAI's `stop`, `input`...), loaded as a list."""

    def __init__(self, *, max_items: int = 64, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_items = max_items

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            if len(value) > self.max_items:
                raise ValidationError(f"at most {self.max_items} items")
            return value
        raise ValidationError("must be a string or a list of strings")


class FunctionTool(fields.Dict):
    """One tool of chat's `tools` (OpenAI's and Ollama's shape): only function tools are served,
    as the Responses face says; another type is a 400 here, not a backend's failure (llama.cpp
    answers 500 to it, which would count against the instance's circuit)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, dict):
            raise ValidationError("Not a valid mapping type.")
        tool = value
        if tool.get("type", "function") != "function":
            raise ValidationError(f"only function tools are served, not {tool.get('type')!r}")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ValidationError("a function tool needs `function` with a `name`")
        return tool


class Upload(fields.Field[UploadedFile]):
    """A file part of a multipart form."""

    default_error_messages = {
        "invalid": "must be a file part (multipart/form-data with a filename)"
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> UploadedFile:
        if not isinstance(value, UploadedFile):
            raise self.make_error("invalid")
        return value


class StrictSchema(LeanSchema):
    """Base of request schemas: unknown fields are an error."""

    class Meta:
        unknown = RAISE


class LoraChoiceSchema(StrictSchema):
    """One per-request LoRA: its name as the binding lists it, and its scale."""

    name = fields.String(required=True, validate=NAME)
    scale = fields.Float(validate=validate.Range(-10, 10))


class ControlNetSchema(StrictSchema):
    """The ControlNet of a request: which model, how strongly, over which part of the steps."""

    model = fields.String(required=True, validate=NAME)
    conditioning_scale = fields.Float(validate=validate.Range(0, 5))
    start = fields.Float(validate=validate.Range(0, 1))
    end = fields.Float(validate=validate.Range(0, 1))


class IpAdapterSchema(StrictSchema):
    """The IP-Adapter of a `style_reference` input: which one (optional when one fits), how much."""

    model = fields.String(validate=NAME)
    scale = fields.Float(validate=validate.Range(0, 2))


class ErrorDetailSchema(Schema):
    """The inside of an error body."""

    type = fields.String()
    message = fields.String()
    binding = fields.String()
    param = fields.String()
    details = fields.Dict()


class ErrorSchema(Schema):
    """The error body of every lollms API route."""

    error = fields.Nested(ErrorDetailSchema)
    detail = fields.String(metadata={"description": "the message, as upstream lollms_server"})
