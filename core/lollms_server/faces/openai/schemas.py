"""marshmallow schemas of the OpenAI-compatible request bodies under /v1/.

Every field the OpenAI API documents for these endpoints is accepted (a `null` value means "not
given"), so real clients never break; an unknown top-level field is a 400.

Honoured: chat/completions `messages`, `model`, `stream`, `stream_options.include_usage`,
`temperature`, `top_p`, `max_tokens`, `max_completion_tokens`, `stop`, `seed`, `presence_penalty`,
`frequency_penalty`; `tools`, `tool_choice` (an `allowed_tools` choice narrows `tools` to those it
names and becomes its mode), `parallel_tool_calls` and the deprecated
`functions`/`function_call` for bindings with the `tools` capability (one call, answered as
`function_call`); legacy completions `echo`;
embeddings `encoding_format`, `dimensions` (checked, not reduced); images `n`, `size`,
`response_format`; speech `voice`, `speed`, `instructions`, `response_format`; transcriptions
`language`, `prompt`, `temperature`, `response_format`.

Passed to the binding, which may honour or ignore them: chat `response_format` (json modes; a
malformed one is a 400) and `reasoning_effort`; images `quality`, `style`, `background`,
`output_format` (png, jpeg or webp: lollms-diffusers encodes it, lollms-openai passes it on),
`output_compression`.

Rejected with a 400 because honouring them matters: `n` > 1 (and `best_of` > 1), audio
`modalities`, `tool_choice` "required" or a named function when the binding cannot call tools,
`tools` that are not function tools (`custom` ones: the server runs no other kind), token-id
`prompt`/`input` arrays, streamed images, streamed transcriptions and `stream_format: "sse"` for
speech, http(s) image URLs (the server never fetches URLs).

Accepted and ignored: `logit_bias`, `logprobs`, `top_logprobs` (logprobs come back null), `user`,
`store`, `metadata`, `service_tier`, `prediction`, `web_search_options`, `verbosity`,
`prompt_cache_*`, `safety_identifier`, `moderation`, `audio` (without audio modalities),
completions `suffix`, images `moderation`, `partial_images`, transcriptions
`chunking_strategy`, `include`, `known_speaker_*`, `keywords`, `languages`.

Common extensions of OpenAI-compatible servers, passed to the binding (the llama.cpp binding sends
`chat_template_kwargs` on; the openai binding sends those named in its `extra_parameters`; others
ignore them): `chat_template_kwargs`, `thinking` (boolean or object), `enable_thinking`,
`reasoning`, `reasoning_summary`, `min_p`, `repetition_penalty`.

Extensions (not in OpenAI's API): chat `personality` (a lollms personality name: its system prompt
and sampling defaults apply; unknown names are a 404), `top_k` and `repeat_penalty` for text,
`keep_alive` on every endpoint that runs a model (seconds the model stays loaded after the
request, or an Ollama duration such as "10m", as Open WebUI sends it: negative forever, 0 unload
now),
`seed`, `negative_prompt`, `steps` (or diffusers' `num_inference_steps`, as lollms-client sends it),
`guidance_scale` (and `strength` for edits) for images;
`loras`, `controlnet` with `controlnet_image`, and `upscale` (edits) for image workflows.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, ValidationError, fields, post_load, validate

from ...bindings import ChatMessage, InputItem
from ...errors import InvalidRequest
from ...httpkit.convert import DATA_URL, decode_data
from ...httpkit.shapes import NAME, FunctionTool, StrictSchema, StringOrList
from ...lean_schema import LeanSchema
from ...ollama_wire import KeepAliveSeconds
from ...request_limits import CappedList
from ...whole_number import Whole

MAX_INPUTS = 2048
ROLES = {role: role for role in ("system", "user", "assistant", "tool")}
ROLES.update(developer="system", function="tool")
PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")
TEXT = validate.Length(max=1_000_000)
ONE_CHOICE = validate.Range(1, 1, error="only 1: one choice per request; make several requests")
ONE_PROMPT = "send one prompt per request (a string or a list of one string)"
SAMPLING = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty")
PASSED_ON = ("top_k", "repeat_penalty", "response_format", "reasoning_effort", "keep_alive")
#: Extensions OpenAI-compatible servers commonly take (vLLM, llama.cpp, SGLang, Z.AI, OpenRouter);
#: `lollms-client` sends them. Passed to the binding: one that understands them uses them.
EXTENSIONS = (
    "chat_template_kwargs",
    "thinking",
    "enable_thinking",
    "reasoning",
    "reasoning_summary",
    "min_p",
    "repetition_penalty",
)


def _opt(field: type[fields.Field[Any]], **kwargs: Any) -> fields.Field[Any]:
    """An optional field where null means absent."""
    return field(load_default=None, allow_none=True, **kwargs)


class MessageContent(fields.Field[Any]):
    """Message content: null, a string, or a list of typed parts (validated, not converted)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list) or len(value) > 1024:
            raise ValidationError("must be a string or a list of at most 1024 content parts")
        for index, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in PART_TYPES:
                raise ValidationError(f"part {index}: type must be one of {', '.join(PART_TYPES)}")
            if kind == "text" and not isinstance(part.get("text"), str):
                raise ValidationError(f"part {index}: a text part needs a string `text`")
            if kind == "image_url" and not _image_url(part):
                raise ValidationError(f"part {index}: an image_url part needs `image_url.url`")
        return value


def _image_url(part: dict[str, Any]) -> bool:
    inner = part.get("image_url")
    return isinstance(inner, str) or (isinstance(inner, dict) and isinstance(inner.get("url"), str))


class TextInput(fields.Field[list[str]]):
    """A string or a list of strings; token-id arrays are refused with a clear message."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise ValidationError("must be a string or a non-empty list of strings")
        if any(isinstance(v, (int, list)) and not isinstance(v, bool) for v in items):
            raise ValidationError("token-id arrays are not supported here; send text")
        if not all(isinstance(v, str) for v in items):
            raise ValidationError("must be a string or a non-empty list of strings")
        if len(items) > MAX_INPUTS:
            raise ValidationError(f"at most {MAX_INPUTS} items")
        return list(items)


class BoolOrObject(fields.Field[Any]):
    """A boolean or a JSON object (`thinking`: `true` or `{"type": "enabled"}`)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, (bool, dict)):
            raise ValidationError("must be a boolean or an object")
        return value


class ResponseFormat(fields.Dict):
    """Chat's `response_format`: `{type: text}`, `{type: json_object}` or `{type: json_schema,
    json_schema: {name, schema...}}`; another shape is a 400, as OpenAI answers it, never a
    free-text answer to a caller who asked for JSON."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        kind = value.get("type") if isinstance(value, dict) else None
        if kind == "json_schema":
            inner = value.get("json_schema")
            if not isinstance(inner, dict) or not isinstance(inner.get("schema", {}), dict):
                raise ValidationError("a json_schema format needs json_schema: {name, schema}")
        elif kind not in ("text", "json_object"):
            raise ValidationError('type must be "text", "json_object" or "json_schema"')
        return value


class StreamOptionsSchema(StrictSchema):
    """`stream_options`."""

    include_usage = _opt(fields.Boolean)
    include_obfuscation = _opt(fields.Boolean)


class MessageSchema(LeanSchema):
    """One chat message, loaded as a ChatMessage; keys other providers add are ignored."""

    class Meta:
        unknown = EXCLUDE

    role = fields.String(required=True, validate=validate.OneOf(list(ROLES)))
    content = MessageContent(load_default=None, allow_none=True)
    name = _opt(fields.String, validate=NAME)
    tool_calls = _opt(CappedList, cls_or_instance=fields.Dict(), cap=128)
    tool_call_id = _opt(fields.String, validate=NAME)
    function_call = _opt(fields.Dict)
    refusal = _opt(fields.String)
    reasoning_content = _opt(fields.String)

    @post_load
    def _to_message(self, data: dict[str, Any], **kwargs: Any) -> ChatMessage:
        role = ROLES[data["role"]]
        content = data["content"]
        if content is None and role in ("system", "user"):
            raise ValidationError(f"a {data['role']} message needs content", "content")
        text, images = _content(content, allow_images=role == "user")
        calls = tuple(data["tool_calls"] or ())
        if data["function_call"]:
            calls += ({"type": "function", "function": data["function_call"]},)
        call_id = data["tool_call_id"] or (data["name"] if data["role"] == "function" else None)
        return ChatMessage(role, text, images, calls, call_id)  # type: ignore[arg-type]


def _content(content: Any, *, allow_images: bool) -> tuple[str, tuple[InputItem, ...]]:
    """Text (parts joined by newlines) and images of validated message content."""
    if content is None or isinstance(content, str):
        return content or "", ()
    texts: list[str] = []
    images: list[InputItem] = []
    for index, part in enumerate(content):
        kind = part["type"]
        if kind == "text":
            texts.append(part["text"])
        elif kind == "refusal":
            texts.append(str(part.get("refusal") or ""))
        elif kind == "image_url" and allow_images:
            images.append(image_of(part["image_url"], index))
        else:
            why = (
                "are accepted only in user messages" if kind == "image_url" else "are not accepted"
            )
            raise ValidationError(f"part {index}: {kind} parts {why}", "content")
    return "\n".join(texts), tuple(images)


def image_of(value: Any, index: int) -> InputItem:
    """The image of an `image_url` part (a data: URL; http(s) URLs are refused)."""
    url = value if isinstance(value, str) else value["url"]
    if not DATA_URL.match(url):
        raise ValidationError(
            f"part {index}: image_url must be a data: URL (data:image/png;base64,...); "
            "the server never fetches http(s) URLs",
            "content",
        )
    try:
        data, mime = decode_data(url, f"content[{index}].image_url.url")
    except InvalidRequest as exc:
        raise ValidationError(exc.message, "content") from exc
    detail = value.get("detail") if isinstance(value, dict) else None
    metadata = {"detail": detail} if detail else {}
    return InputItem("image", role="input_image", data=data, mime_type=mime, metadata=metadata)


class SamplingSchema(StrictSchema):
    """Fields shared by chat and legacy completions."""

    model = _opt(fields.String, validate=NAME)
    stream = fields.Boolean(load_default=False, allow_none=True)
    stream_options = _opt(fields.Nested, nested=StreamOptionsSchema)
    temperature = _opt(fields.Float, validate=validate.Range(0, 2))
    top_p = _opt(fields.Float, validate=validate.Range(0, 1))
    n = _opt(Whole, validate=ONE_CHOICE)
    stop = StringOrList(max_items=16, load_default=None, allow_none=True)
    max_tokens = _opt(Whole, validate=validate.Range(1, 10_000_000))
    presence_penalty = _opt(fields.Float, validate=validate.Range(-2, 2))
    frequency_penalty = _opt(fields.Float, validate=validate.Range(-2, 2))
    logit_bias = _opt(fields.Dict)
    seed = _opt(Whole, validate=validate.Range(-(2**63), 2**63 - 1))
    user = _opt(fields.String)
    top_k = _opt(Whole, validate=validate.Range(0, 100_000))
    repeat_penalty = _opt(fields.Float, validate=validate.Range(0, 10))
    keep_alive = KeepAliveSeconds(load_default=None, allow_none=True)
    chat_template_kwargs = _opt(fields.Dict)
    thinking = _opt(BoolOrObject)
    enable_thinking = _opt(fields.Boolean)
    reasoning = _opt(fields.Dict)
    reasoning_summary = _opt(fields.String, validate=validate.Length(max=32))
    min_p = _opt(fields.Float, validate=validate.Range(0, 1))
    repetition_penalty = _opt(fields.Float, validate=validate.Range(0, 10))

    @post_load
    def _parameters(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Add `parameters` (binding names, nulls left out), `include_usage`, normalized `tools`."""
        names = (*SAMPLING, *PASSED_ON, *EXTENSIONS)
        parameters = {name: data[name] for name in names if data.get(name) is not None}
        max_tokens = data.get("max_completion_tokens") or data["max_tokens"]
        if max_tokens is not None:
            parameters["max_tokens"] = max_tokens
        data["parameters"] = parameters
        data["include_usage"] = bool((data["stream_options"] or {}).get("include_usage"))
        # the deprecated names: one call, answered as `function_call` (chat.FunctionCallShape)
        data["legacy_functions"] = bool(data.get("functions")) and not data.get("tools")
        if data["legacy_functions"]:
            data["tools"] = [{"type": "function", "function": f} for f in data["functions"]]
            if data["parallel_tool_calls"] is None:
                data["parallel_tool_calls"] = False
        call = data.get("function_call")
        if call is not None and data["tool_choice"] is None:
            data["tool_choice"] = (
                call if isinstance(call, str) else {"type": "function", "function": call}
            )
        return data


class ChatCompletionSchema(SamplingSchema):
    """`POST /v1/chat/completions`."""

    messages = CappedList(
        fields.Nested(MessageSchema),
        cap="max_list_items",
        required=True,
        validate=validate.Length(min=1),
    )
    max_completion_tokens = _opt(Whole, validate=validate.Range(1, 10_000_000))
    logprobs = _opt(fields.Boolean)
    top_logprobs = _opt(Whole, validate=validate.Range(0, 20))
    tools = _opt(CappedList, cls_or_instance=FunctionTool(), cap=512)
    tool_choice = _opt(fields.Raw)
    parallel_tool_calls = _opt(fields.Boolean)
    functions = _opt(CappedList, cls_or_instance=fields.Dict(), cap=512)
    function_call = _opt(fields.Raw)
    response_format = _opt(ResponseFormat)
    store = _opt(fields.Boolean)
    metadata = _opt(fields.Dict)
    reasoning_effort = _opt(fields.String, validate=validate.Length(max=32))
    service_tier = _opt(fields.String, validate=validate.Length(max=32))
    modalities = _opt(
        CappedList, cls_or_instance=fields.String(), cap=8, validate=validate.ContainsOnly(["text"])
    )
    audio = _opt(fields.Dict)
    prediction = _opt(fields.Dict)
    web_search_options = _opt(fields.Dict)
    verbosity = _opt(fields.String, validate=validate.Length(max=32))
    prompt_cache_key = _opt(fields.String)
    prompt_cache_retention = _opt(fields.String)
    prompt_cache_options = _opt(fields.Dict)
    safety_identifier = _opt(fields.String)
    moderation = _opt(fields.Dict)
    personality = _opt(fields.String, validate=NAME)


class CompletionSchema(SamplingSchema):
    """`POST /v1/completions` (legacy)."""

    prompt = TextInput(required=True, validate=validate.Length(equal=1, error=ONE_PROMPT))
    best_of = _opt(Whole, validate=ONE_CHOICE)
    echo = fields.Boolean(load_default=False, allow_none=True)
    logprobs = _opt(Whole, validate=validate.Range(0, 5))
    suffix = _opt(fields.String, validate=TEXT)


class EmbeddingSchema(StrictSchema):
    """`POST /v1/embeddings`."""

    input = TextInput(required=True)
    model = _opt(fields.String, validate=NAME)
    encoding_format = fields.String(
        load_default="float", allow_none=True, validate=validate.OneOf(["float", "base64"])
    )
    dimensions = _opt(Whole, validate=validate.Range(1, 65536))
    user = _opt(fields.String)
    keep_alive = KeepAliveSeconds(load_default=None, allow_none=True)
