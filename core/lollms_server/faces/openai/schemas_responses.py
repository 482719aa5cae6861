"""marshmallow schema of `POST /v1/responses` (OpenAI's Responses API, stateless).

Honoured: `input` (a string, or message items with `input_text`/`input_image`/`output_text`
parts, `function_call` and `function_call_output` items), `instructions`, `model`, `stream`,
`temperature`, `top_p`, `max_output_tokens`, function `tools`, `tool_choice` (`allowed_tools`
included), `parallel_tool_calls`. Passed to the binding: `text.format` (as chat's
`response_format`), `reasoning.effort` (or chat's `reasoning_effort`), and chat's `top_k`,
`seed`, `min_p`, `repeat_penalty`, `keep_alive` (seconds or an Ollama duration, as on chat).
Extension: `personality`, as on chat.

Nothing is stored, so what needs a stored object is a 400: `previous_response_id`,
`conversation`, `item_reference` items, `background`, `prompt` templates, file ids; so are
built-in tools (web search, file search, computer use...), which the server does not run.
Accepted and ignored: `store`, `metadata`, `user`, `safety_identifier`, `prompt_cache_*`,
`service_tier`, `truncation`, `include`, `top_logprobs`, `max_tool_calls`, `stream_options`,
`context_management`, `moderation`, `image`, `access_programs`, `background_options`,
reasoning items of the input.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, post_load, validate

from ...bindings import ChatMessage, InputItem
from ...httpkit.shapes import NAME, StrictSchema
from ...ollama_wire import KeepAliveSeconds
from ...request_limits import CappedList
from ...whole_number import Whole
from .schemas import TEXT, _opt, image_of

ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
TEXT_PARTS = ("input_text", "output_text", "text", "refusal")
#: sampling parameters passed on under chat's names (the extensions are what chat also takes)
SAMPLING = ("temperature", "top_p", "top_k", "seed", "min_p", "repeat_penalty", "keep_alive")
STATELESS = "the server keeps no responses or conversations: send the whole conversation in input"
OUT_OF_SCOPE_PARTS = ("input_file", "input_audio")


class ResponseInput(fields.Field[Any]):
    """`input`: a string or a list of items (validated and converted in the schema)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            return value
        if not isinstance(value, list) or not value:
            raise ValidationError("must be a string or a non-empty list of input items")
        if not all(isinstance(item, dict) for item in value):
            raise ValidationError("every input item must be an object")
        return value


class ReasoningSchema(StrictSchema):
    """`reasoning`: the effort is passed to the binding as `reasoning_effort`."""

    effort = _opt(fields.String, validate=validate.Length(max=32))
    summary = _opt(fields.String, validate=validate.Length(max=32))
    generate_summary = _opt(fields.String, validate=validate.Length(max=32))


class TextSchema(StrictSchema):
    """`text`: its `format` becomes chat's `response_format`."""

    format = _opt(fields.Dict)
    verbosity = _opt(fields.String, validate=validate.Length(max=32))


class ResponseSchema(StrictSchema):
    """`POST /v1/responses`."""

    model = _opt(fields.String, validate=NAME)
    input = ResponseInput(required=True)
    instructions = _opt(fields.String, validate=TEXT)
    stream = fields.Boolean(load_default=False, allow_none=True)
    stream_options = _opt(fields.Dict)
    temperature = _opt(fields.Float, validate=validate.Range(0, 2))
    top_p = _opt(fields.Float, validate=validate.Range(0, 1))
    max_output_tokens = _opt(Whole, validate=validate.Range(1, 10_000_000))
    tools = _opt(CappedList, cls_or_instance=fields.Dict(), cap=512)
    tool_choice = _opt(fields.Raw)
    parallel_tool_calls = _opt(fields.Boolean)
    max_tool_calls = _opt(Whole, validate=validate.Range(1, 10_000))
    text = _opt(fields.Nested, nested=TextSchema)
    reasoning = _opt(fields.Nested, nested=ReasoningSchema)
    store = _opt(fields.Boolean)
    metadata = _opt(fields.Dict)
    user = _opt(fields.String)
    safety_identifier = _opt(fields.String)
    prompt_cache_key = _opt(fields.String)
    prompt_cache_retention = _opt(fields.String)
    service_tier = _opt(fields.String, validate=validate.Length(max=32))
    truncation = _opt(fields.String, validate=validate.OneOf(["auto", "disabled"]))
    include = _opt(CappedList, cls_or_instance=fields.String(), cap=32)
    top_logprobs = _opt(Whole, validate=validate.Range(0, 20))
    previous_response_id = _opt(fields.String)
    conversation = _opt(fields.Raw)
    background = _opt(fields.Boolean)
    prompt = _opt(fields.Raw)
    access_programs = _opt(fields.Raw)
    background_options = _opt(fields.Dict)
    context_management = _opt(CappedList, cls_or_instance=fields.Dict(), cap=32)
    image = _opt(fields.Dict)
    moderation = _opt(fields.Dict)
    prompt_cache_options = _opt(fields.Dict)
    top_k = _opt(Whole, validate=validate.Range(0, 100_000))
    seed = _opt(Whole, validate=validate.Range(-(2**63), 2**63 - 1))
    min_p = _opt(fields.Float, validate=validate.Range(0, 1))
    repeat_penalty = _opt(fields.Float, validate=validate.Range(0, 10))
    reasoning_effort = _opt(fields.String, validate=validate.Length(max=32))
    keep_alive = KeepAliveSeconds(load_default=None, allow_none=True)
    personality = _opt(fields.String, validate=NAME)

    @post_load
    def _convert(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Add `messages`, `parameters`, and `tools`/`tool_choice` in chat's shape."""
        for name in ("previous_response_id", "conversation", "prompt"):
            if data[name] is not None:
                raise ValidationError(STATELESS, name)
        if data["background"]:
            raise ValidationError(
                "background responses are not served; stream instead", "background"
            )
        data["messages"] = _messages(data["input"], data["instructions"])
        data["chat_tools"] = _chat_tools(data["tools"])
        data["chat_tool_choice"] = _chat_tool_choice(data["tool_choice"])
        data["parameters"] = _parameters(data)
        return data


def _parameters(data: dict[str, Any]) -> dict[str, Any]:
    """Binding parameters under chat's names; nulls left out."""
    parameters = {
        name: data[name] for name in (*SAMPLING, "reasoning_effort") if data[name] is not None
    }
    if data["max_output_tokens"] is not None:
        parameters["max_tokens"] = data["max_output_tokens"]
    effort = (data["reasoning"] or {}).get("effort")
    if effort is not None:  # OpenAI's name wins over chat's
        parameters["reasoning_effort"] = effort
    response_format = _response_format((data["text"] or {}).get("format"))
    if response_format is not None:
        parameters["response_format"] = response_format
    return parameters


def _response_format(given: Any) -> dict[str, Any] | None:
    """`text.format` as chat's `response_format` (`json_schema` nests its schema)."""
    if given is None:
        return None
    kind = given.get("type") if isinstance(given, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema" and isinstance(given.get("schema"), dict):
        inner = {k: given[k] for k in ("name", "schema", "strict", "description") if k in given}
        return {"type": "json_schema", "json_schema": inner}
    raise ValidationError(
        "text.format must be {type: text}, {type: json_object} or "
        "{type: json_schema, name, schema}",
        "text",
    )


def _chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Function tools in chat's shape; built-in tools are refused (the server runs none)."""
    if not tools:
        return None
    converted = []
    for index, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise ValidationError(
                f"tool {index}: only function tools are served, not {tool.get('type')!r}", "tools"
            )
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise ValidationError(f"tool {index}: a function tool needs a `name`", "tools")
        function = {
            k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool
        }
        converted.append({"type": "function", "function": function})
    return converted


def _chat_tool_choice(choice: Any) -> Any:
    """`tool_choice` in chat's shape (`{type: function, name}` and allowed_tools nest names)."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": str(choice["name"])}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        tools = choice.get("tools")
        nested = [
            {"type": "function", "function": {"name": tool.get("name")}}
            for tool in (tools if isinstance(tools, list) else ())
            if isinstance(tool, dict)
        ]
        return {
            "type": "allowed_tools",
            "allowed_tools": {"mode": choice.get("mode"), "tools": nested},
        }
    raise ValidationError(
        'must be "auto", "none", "required", {type: function, name} or '
        "{type: allowed_tools, mode, tools}",
        "tool_choice",
    )


def _messages(given: Any, instructions: str | None) -> list[ChatMessage]:
    """The conversation: instructions as the system message, then the input items."""
    messages = [ChatMessage("system", instructions)] if instructions else []
    if isinstance(given, str):
        return [*messages, ChatMessage("user", given)]
    for index, item in enumerate(given):
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, index))
        elif kind == "function_call":
            _add_call(messages, item, index)
        elif kind == "function_call_output":
            messages.append(_call_output(item, index))
        elif kind == "reasoning":
            continue  # the model's earlier reasoning: not sent back to it
        elif kind == "item_reference":
            raise ValidationError(f"item {index}: {STATELESS}", "input")
        else:
            raise ValidationError(f"item {index}: type {kind!r} is not served", "input")
    if not messages or all(m.role == "system" for m in messages):
        raise ValidationError("input holds no message", "input")
    return messages


def _message(item: dict[str, Any], index: int) -> ChatMessage:
    role = ROLES.get(item.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise ValidationError(f"item {index}: role must be one of {', '.join(ROLES)}", "input")
    text, images = _content(item.get("content"), index, allow_images=role == "user")
    return ChatMessage(role, text, images)  # type: ignore[arg-type]


def _content(content: Any, index: int, *, allow_images: bool) -> tuple[str, tuple[InputItem, ...]]:
    """Text (parts joined by newlines) and images of one message's content."""
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list) or len(content) > 1024:
        raise ValidationError(
            f"item {index}: content must be a string or a list of at most 1024 parts", "input"
        )
    texts: list[str] = []
    images: list[InputItem] = []
    for number, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        where = f"item {index} part {number}"
        if kind in TEXT_PARTS:
            text = part.get("refusal" if kind == "refusal" else "text")
            if not isinstance(text, str):
                raise ValidationError(f"{where}: a {kind} part needs a string text", "input")
            texts.append(text)
        elif kind == "input_image" and allow_images:
            url = part.get("image_url")
            if not isinstance(url, str):
                raise ValidationError(
                    f"{where}: input_image needs image_url (a data: URL); file ids are not served",
                    "input",
                )
            images.append(image_of({"url": url, "detail": part.get("detail")}, number))
        elif kind == "input_image":
            raise ValidationError(f"{where}: images are accepted only in user messages", "input")
        else:
            served = ", ".join((*TEXT_PARTS, "input_image"))
            raise ValidationError(f"{where}: part type must be one of {served}", "input")
    return "\n".join(texts), tuple(images)


def _add_call(messages: list[ChatMessage], item: dict[str, Any], index: int) -> None:
    """A function call joins the assistant message before it, or starts one."""
    name, call_id, arguments = item.get("name"), item.get("call_id"), item.get("arguments", "{}")
    if not isinstance(name, str) or not isinstance(call_id, str) or not isinstance(arguments, str):
        raise ValidationError(
            f"item {index}: a function_call needs string name, call_id and arguments", "input"
        )
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    last = messages[-1] if messages else None
    if last is not None and last.role == "assistant":
        messages[-1] = ChatMessage("assistant", last.content, (), (*last.tool_calls, call))  # type: ignore[arg-type]
    else:
        messages.append(ChatMessage("assistant", "", (), (call,)))  # type: ignore[arg-type]


def _call_output(item: dict[str, Any], index: int) -> ChatMessage:
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str):
        raise ValidationError(f"item {index}: a function_call_output needs a call_id", "input")
    if isinstance(output, list):
        output, _ = _content(output, index, allow_images=False)
    if not isinstance(output, str):
        raise ValidationError(f"item {index}: output must be a string or text parts", "input")
    return ChatMessage("tool", output, tool_call_id=call_id)
