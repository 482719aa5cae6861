"""Conversions between HTTP payloads and the typed binding objects, shared by the faces."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..bindings import ChatMessage, Health, InputItem, ModelInfo, Output, Usage
from ..errors import InvalidRequest, UnsupportedMediaType
from ..media_types import sniff_image

DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*;base64,", re.I)
B64_BLOCK = 1 << 20  # a multiple of 4: blocks decode independently
CHAT_ROLES = {
    "user": "user",
    "user_prompt": "user",
    "assistant": "assistant",
    "assistant_response": "assistant",
    "system": "system",
    "system_context": "system",
}


def decode_data(value: str, param: str) -> tuple[bytes, str | None]:
    """Decode base64 or a `data:<mime>;base64,` URL; a bad value is a 400 naming `param`."""
    mime = None
    if value[:8].lower().startswith(("http://", "https://")):
        raise InvalidRequest(
            f"{param} is a URL: the server fetches no URL; send base64 or a data: URL",
            param=param,
        )
    match = DATA_URL.match(value)
    if match:
        mime = match.group("mime")
        value = value[match.end() :]
    try:
        return b64decode(value), mime
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"{param} is not valid base64: {exc}", param=param) from exc


def decode_image(value: str, param: str, role: str = "input_image") -> InputItem:
    """A base64 (or data URL) image input; what is no PNG, JPEG, GIF or WebP is a 415, so
    that it is refused before any capability check."""
    data, _ = decode_data(value, param)
    mime = sniff_image(data)
    if mime is None:
        raise UnsupportedMediaType(f"{param} is no PNG, JPEG, GIF or WebP image", param=param)
    return InputItem("image", role=role, data=data, mime_type=mime)


def b64decode(value: str) -> bytes:
    """Strict base64 decoding a block at a time, so that a worker thread decoding big media
    never holds the interpreter for long."""
    if len(value) <= B64_BLOCK:
        return binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    decoded = bytearray()
    for start in range(0, len(value), B64_BLOCK):
        block = value[start : start + B64_BLOCK].encode("ascii")
        decoded += binascii.a2b_base64(block, strict_mode=True)
    return bytes(decoded)


def media_size(items: Iterable[Mapping[str, Any]]) -> int:
    """Characters of media (non-text) data in lollms `input_data`."""
    return sum(len(item["data"]) for item in items if item["type"] != "text")


def encode_data(data: bytes) -> str:
    """Base64 text of binary data (a block at a time, like `b64decode`)."""
    if len(data) <= B64_BLOCK:
        return base64.b64encode(data).decode("ascii")
    step = B64_BLOCK // 4 * 3  # whole 3-byte groups: the blocks' base64 concatenates
    return "".join(
        base64.b64encode(data[start : start + step]).decode("ascii")
        for start in range(0, len(data), step)
    )


def lollms_inputs(items: Iterable[Mapping[str, Any]]) -> tuple[list[ChatMessage], list[InputItem]]:
    """Turn lollms `input_data` into chat messages (in order, system first) and media inputs."""
    system: list[str] = []
    messages: list[ChatMessage] = []
    inputs: list[InputItem] = []
    for index, item in enumerate(items):
        role = item["role"]
        if item["type"] == "text":
            chat_role = CHAT_ROLES.get(role)
            if chat_role == "system":
                system.append(item["data"])
            elif chat_role is not None:
                messages.append(ChatMessage(chat_role, item["data"]))  # type: ignore[arg-type]
            else:
                inputs.append(
                    InputItem("text", role=role, text=item["data"], metadata=item["metadata"])
                )
            continue
        if item["type"] == "document" and _is_text_document(item):
            mime = item["mime_type"] or "text/plain"
            inputs.append(
                InputItem("document", role=role, text=item["data"], mime_type=mime,
                          metadata=item["metadata"])
            )  # fmt: skip
            continue
        data, url_mime = decode_data(item["data"], f"input_data[{index}].data")
        inputs.append(
            InputItem(
                item["type"],
                role=role,
                data=data,
                mime_type=item["mime_type"] or url_mime,
                metadata=item["metadata"],
            )
        )
    images = tuple(
        i for i in inputs if i.type == "image" and i.role in ("input_image", "user_image")
    )
    if images and messages and messages[-1].role == "user":
        last = messages[-1]
        messages[-1] = ChatMessage("user", last.content, images=images)
    if system:
        messages.insert(0, ChatMessage("system", "\n\n".join(system)))
    return messages, inputs


def _is_text_document(item: Mapping[str, Any]) -> bool:
    """A `document` item is text unless it is a data: URL or names a non-text mime type."""
    mime = item["mime_type"]
    if DATA_URL.match(item["data"]):
        return False
    return mime is None or mime.startswith("text/") or mime in ("application/json",)


def output_dict(output: Output) -> dict[str, Any]:
    """A lollms `output` item: text as is, binary media as base64."""
    return {
        "type": output.type,
        "data": output.text if output.type == "text" else encode_data(output.data),
        "mime_type": output.mime_type,
        "thoughts": output.thoughts,
        "metadata": dict(output.metadata),
    }


def model_dict(model: ModelInfo, instance: str) -> dict[str, Any]:
    """The public description of a model."""
    return {
        "name": model.name,
        "id": f"{instance}/{model.name}",
        "binding_instance": instance,
        "family": model.family,
        "size_bytes": model.size_bytes,
        "parameters": model.parameters,
        "quantization": model.quantization,
        "context_length": model.context_length,
        "capabilities": sorted(model.capabilities),
        "memory_bytes": model.memory_bytes,
        "loaded": model.loaded,
        "details": dict(model.details),
    }


def health_dict(health: Health) -> dict[str, Any]:
    """The public description of an instance's health."""
    return {"state": health.state, "detail": health.detail, "latency_ms": health.latency_ms}


def usage_dict(usage: Usage | None) -> dict[str, int] | None:
    """Token usage in the OpenAI shape shared by the faces."""
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
