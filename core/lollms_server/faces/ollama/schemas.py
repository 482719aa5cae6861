"""marshmallow schemas of the Ollama-compatible request bodies under /api/ (not /api/v1/).

Unknown fields are ignored, as Ollama itself ignores them, so newer clients never break; known
fields are type-checked (a wrong type is a 400 in Ollama's `{"error": "..."}` shape).

Honoured: `model`; chat `messages` (roles system/user/assistant/tool, base64 `images`,
`tool_calls`, `tool_name`, and `tool_call_id`, which Open WebUI sends and which wins over
`tool_name` as the link to the call), `tools` (bindings with the tools capability); generate
`prompt`, `system`, `images`, `raw`; `stream` (true when absent, as in Ollama); `think` (false
drops the thoughts from the answer); `keep_alive` (0 with no prompt unloads; passed to the binding);
`format` ("json" or a JSON schema, passed on as `response_format`); embed `input`,
`dimensions` (vectors truncated and re-normalized, as Ollama does).

`options` mapped to binding parameters: temperature, top_p, top_k, num_predict (> 0) ->
max_tokens, stop, seed, repeat_penalty, presence_penalty, frequency_penalty. The other Ollama
options listed in `PASSED_ON_OPTIONS` go to the binding under their Ollama names (the ollama
binding forwards them, others ignore them); unknown options are ignored, as in Ollama.

Refused (400): a non-empty `suffix` or `template` (fill-in-the-middle and custom templates cannot
be honoured by every binding), `tools` that are not function tools. Ignored: `context`,
`logprobs`, `top_logprobs`, `verbose`, the image-generation fields `width`, `height`, `steps`,
and embed's `truncate` and `options` (bindings embed with their own settings); embed's
`keep_alive` applies as on chat.
"""

from __future__ import annotations

import json
from typing import Any

from marshmallow import EXCLUDE, ValidationError, fields, post_load, pre_load, validate

from ...bindings import ChatMessage, InputItem, ToolCall
from ...errors import InvalidRequest
from ...httpkit.convert import decode_data
from ...httpkit.shapes import NAME, FunctionTool, StringOrList
from ...lean_schema import LeanSchema
from ...media_types import sniff_image
from ...ollama_wire import PASSED_ON_OPTIONS, KeepAlive, keep_alive_seconds
from ...request_limits import CappedList
from ...whole_number import Whole

MAX_IMAGES = 16
MAPPED_OPTIONS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "stop": "stop",
    "seed": "seed",
    "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
THINK_LEVELS = ("low", "medium", "high")


def _opt(field: type[fields.Field[Any]], **kwargs: Any) -> fields.Field[Any]:
    """An optional field where null means absent."""
    return field(load_default=None, allow_none=True, **kwargs)


class Format(fields.Field[Any]):
    """`format`: "", "json", or a JSON schema object."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if value in ("", "json") or isinstance(value, dict):
            return value
        raise ValidationError('must be "json" or a JSON schema object')


class Think(fields.Field[Any]):
    """`think`: a boolean, or a level ("low", "medium", "high")."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or value in THINK_LEVELS:
            return value
        raise ValidationError(f"must be true, false or one of {', '.join(THINK_LEVELS)}")


class OllamaLenientSchema(LeanSchema):
    """Base of the Ollama request schemas: unknown fields are ignored, as Ollama does."""

    class Meta:
        unknown = EXCLUDE


class OllamaOptionsSchema(OllamaLenientSchema):
    """`options`, loaded as binding parameters."""

    temperature = _opt(fields.Float, validate=validate.Range(0, 100))
    top_p = _opt(fields.Float, validate=validate.Range(0, 1))
    top_k = _opt(Whole, validate=validate.Range(0, 1_000_000))
    num_predict = _opt(Whole, validate=validate.Range(-2, 10_000_000))
    stop = StringOrList(max_items=16, load_default=None, allow_none=True)
    seed = _opt(Whole, validate=validate.Range(-(2**63), 2**63 - 1))
    repeat_penalty = _opt(fields.Float, validate=validate.Range(0, 100))
    presence_penalty = _opt(fields.Float, validate=validate.Range(-100, 100))
    frequency_penalty = _opt(fields.Float, validate=validate.Range(-100, 100))
    num_ctx = _opt(Whole, validate=validate.Range(1, 10_000_000))
    num_keep = _opt(Whole, validate=validate.Range(-1, 10_000_000))
    num_batch = _opt(Whole, validate=validate.Range(1, 10_000_000))
    num_gpu = _opt(Whole, validate=validate.Range(-1, 100_000))
    main_gpu = _opt(Whole, validate=validate.Range(0, 1024))
    num_thread = _opt(Whole, validate=validate.Range(0, 4096))
    repeat_last_n = _opt(Whole, validate=validate.Range(-1, 10_000_000))
    min_p = _opt(fields.Float, validate=validate.Range(0, 1))
    typical_p = _opt(fields.Float, validate=validate.Range(0, 1))
    tfs_z = _opt(fields.Float, validate=validate.Range(0, 100))
    mirostat = _opt(Whole, validate=validate.Range(0, 2))
    mirostat_tau = _opt(fields.Float, validate=validate.Range(0, 100))
    mirostat_eta = _opt(fields.Float, validate=validate.Range(0, 100))
    penalize_newline = _opt(fields.Boolean)
    numa = _opt(fields.Boolean)
    low_vram = _opt(fields.Boolean)
    use_mmap = _opt(fields.Boolean)
    use_mlock = _opt(fields.Boolean)

    @post_load
    def _parameters(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Binding parameters: mapped names, `max_tokens`, then passed-on Ollama names."""
        parameters = {
            ours: data[theirs]
            for theirs, ours in MAPPED_OPTIONS.items()
            if data[theirs] is not None
        }
        if data["num_predict"] is not None and data["num_predict"] > 0:
            parameters["max_tokens"] = data["num_predict"]
        for name in PASSED_ON_OPTIONS:
            if data[name] is not None:
                parameters[name] = data[name]
        return parameters


def image_item(value: str, where: str) -> InputItem:
    """A base64 image (or data: URL) as an InputItem; anything but PNG/JPEG/GIF/WEBP is a 400."""
    try:
        data, url_mime = decode_data(value, where)
    except InvalidRequest as exc:
        raise ValidationError(exc.message) from exc
    mime = sniff_image(data)
    if mime is None:
        raise ValidationError(f"{where} is not a PNG, JPEG, GIF or WEBP image")
    return InputItem("image", role="input_image", data=data, mime_type=url_mime or mime)


def _images(values: list[str] | None, where: str) -> tuple[InputItem, ...]:
    return tuple(image_item(v, f"{where}[{i}]") for i, v in enumerate(values or ()))


class OllamaMessageSchema(OllamaLenientSchema):
    """One chat message, loaded as a ChatMessage."""

    role = fields.String(
        required=True, validate=validate.OneOf(["system", "user", "assistant", "tool"])
    )
    content = fields.String(load_default="", allow_none=True)
    images = _opt(CappedList, cls_or_instance=fields.String(), cap=MAX_IMAGES)
    thinking = _opt(fields.String)
    tool_calls = _opt(CappedList, cls_or_instance=fields.Dict(), cap=128)
    tool_name = _opt(fields.String, validate=NAME)
    tool_call_id = _opt(fields.String, validate=NAME)  # not Ollama's: Open WebUI sends it

    @post_load
    def _to_message(self, data: dict[str, Any], **kwargs: Any) -> ChatMessage:
        images = _images(data["images"], "images")
        if images and data["role"] != "user":
            raise ValidationError("images are accepted in user messages only", "images")
        calls = tuple(_openai_call(i, c) for i, c in enumerate(data["tool_calls"] or ()))
        link = data["tool_call_id"] or data["tool_name"] or None
        return ChatMessage(data["role"], data["content"] or "", images, calls, link)


def _openai_call(index: int, call: dict[str, Any]) -> ToolCall:
    """An Ollama tool call (`function.arguments` an object), checked."""
    function = call.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise ValidationError(f"tool_calls[{index}] needs function.name", "tool_calls")
    arguments = function.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    call_id = call.get("id")
    return ToolCall(
        call_id if isinstance(call_id, str) else f"call_{index}", function["name"], arguments
    )


class OllamaRequestSchema(OllamaLenientSchema):
    """Fields shared by chat and generate."""

    model = fields.String(required=True, validate=NAME)
    stream = fields.Boolean(load_default=True, allow_none=True)
    format = Format(load_default=None, allow_none=True)
    options = fields.Nested(OllamaOptionsSchema, load_default=dict, allow_none=True)
    keep_alive = KeepAlive(load_default=None, allow_none=True)
    think = Think(load_default=None, allow_none=True)

    @post_load
    def _parameters(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Add `parameters`: options, `response_format`, `keep_alive`, `think`."""
        parameters = dict(data["options"] or {})
        data["stream"] = data["stream"] is not False
        fmt = data["format"]
        if fmt == "json":
            parameters["response_format"] = {"type": "json_object"}
        elif isinstance(fmt, dict):
            schema = {"name": "response", "schema": fmt}
            parameters["response_format"] = {"type": "json_schema", "json_schema": schema}
        if data["keep_alive"] is not None:
            parameters["keep_alive"] = keep_alive_seconds(data["keep_alive"])
        if data["think"] is not None:
            parameters["think"] = data["think"]
        data["parameters"] = parameters
        return data


class OllamaChatSchema(OllamaRequestSchema):
    """`POST /api/chat`; no messages means "load the model" (or unload with keep_alive 0)."""

    messages = CappedList(
        fields.Nested(OllamaMessageSchema), cap="max_list_items", load_default=list
    )
    tools = _opt(CappedList, cls_or_instance=FunctionTool(), cap=512)
    logprobs = _opt(fields.Boolean)
    top_logprobs = _opt(Whole, validate=validate.Range(0, 20))


class OllamaGenerateSchema(OllamaRequestSchema):
    """`POST /api/generate`; no prompt and no images means "load the model" (or unload)."""

    prompt = fields.String(load_default="", allow_none=True)
    suffix = _opt(fields.String)
    images = _opt(CappedList, cls_or_instance=fields.String(), cap=MAX_IMAGES)
    system = _opt(fields.String)
    template = _opt(fields.String)
    context = _opt(CappedList, cls_or_instance=Whole(), cap="max_token_ids")
    raw = fields.Boolean(load_default=False, allow_none=True)
    logprobs = _opt(fields.Boolean)
    top_logprobs = _opt(Whole, validate=validate.Range(0, 20))

    @post_load
    def _messages(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Add `messages`: the system prompt, then the prompt with its images."""
        for name, what in (("suffix", "fill-in-the-middle"), ("template", "custom templates")):
            if data[name]:
                raise ValidationError(f"{what} ({name}) is not supported by lollms-server", name)
        images = _images(data["images"], "images")
        messages: list[ChatMessage] = []
        if data["system"]:
            messages.append(ChatMessage("system", data["system"]))
        if data["prompt"] or images:
            messages.append(ChatMessage("user", data["prompt"] or "", images))
        data["messages"] = messages
        return data


class OllamaModelSchema(OllamaLenientSchema):
    """A body naming a model: `model`, or the legacy `name`."""

    model = fields.String(required=True, validate=NAME)

    @pre_load
    def _legacy_name(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict) and "model" not in data and "name" in data:
            return {**data, "model": data["name"]}
        return data


class OllamaShowSchema(OllamaModelSchema):
    """`POST /api/show`."""

    verbose = _opt(fields.Boolean)


class OllamaEmbedSchema(OllamaLenientSchema):
    """`POST /api/embed`; an empty input (none, `[]` or `""`) only resolves the model."""

    model = fields.String(required=True, validate=NAME)
    input = StringOrList(max_items=2048, load_default=list, allow_none=True)
    truncate = _opt(fields.Boolean)
    options = fields.Nested(OllamaOptionsSchema, load_default=dict, allow_none=True)
    keep_alive = KeepAlive(load_default=None, allow_none=True)
    dimensions = _opt(Whole, validate=validate.Range(1, 65536))

    @pre_load
    def _empty_string_is_no_input(self, data: Any, **kwargs: Any) -> Any:
        """`input: ""` is no input, as Ollama reads it (clients send it to warm a model up);
        an empty string inside a list stays a 400."""
        if isinstance(data, dict) and data.get("input") == "":
            return {**data, "input": []}
        return data


class OllamaEmbeddingsSchema(OllamaLenientSchema):
    """`POST /api/embeddings` (legacy: one `prompt`, one `embedding`)."""

    model = fields.String(required=True, validate=NAME)
    prompt = fields.String(load_default="", allow_none=True)
    options = fields.Nested(OllamaOptionsSchema, load_default=dict, allow_none=True)
    keep_alive = KeepAlive(load_default=None, allow_none=True)


class OllamaCopySchema(OllamaLenientSchema):
    """`POST /api/copy`."""

    source = fields.String(required=True, validate=NAME)
    destination = fields.String(required=True, validate=NAME)
