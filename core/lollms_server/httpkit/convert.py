"""Conversions between HTTP payloads and the typed binding objects, shared by the faces."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from ..bindings import Health, InputItem, ModelInfo, Output, Usage
from ..errors import InvalidRequest, UnsupportedMediaType
from ..media_types import sniff_image

DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*;base64,", re.I)
B64_BLOCK = 1 << 20  # a multiple of 4: blocks decode independently


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
    return image_item(data, param, role)


def image_item(data: bytes, param: str, role: str = "input_image") -> InputItem:
    """An image input of raw bytes (base64-decoded or uploaded); what is no PNG, JPEG, GIF or
    WebP is a 415 naming `param`."""
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


def encode_data(data: bytes) -> str:
    """Base64 text of binary data (a block at a time, like `b64decode`)."""
    if len(data) <= B64_BLOCK:
        return base64.b64encode(data).decode("ascii")
    step = B64_BLOCK // 4 * 3  # whole 3-byte groups: the blocks' base64 concatenates
    return "".join(
        base64.b64encode(data[start : start + step]).decode("ascii")
        for start in range(0, len(data), step)
    )


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
