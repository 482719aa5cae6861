"""The node's lollms API on the wire: request bodies out, answers and SSE events back in.

Media travel as the node sends them: base64 is decoded to the same bytes with the node's mime
type and metadata, never re-encoded into another format.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from lollms_server.sdk import (
    CAPABILITIES,
    BackendError,
    Chunk,
    GenerationRequest,
    LollmsError,
    ModelInfo,
    Output,
    Result,
    Usage,
    b64decode,
    encode_data,
)

BIG_ANSWER = 256 * 1024  # bytes of JSON decoded in a worker thread rather than on the loop
TEXT_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "tool": "user"}


def split_model(model: str) -> tuple[str | None, str]:
    """`instance/model` of the node as its binding and model names; a bare name as (None, name)."""
    instance, slash, name = model.partition("/")
    return (instance, name) if slash and instance and name else (None, model)


def generate_body(
    request: GenerationRequest, *, stream: bool, binding_name: str | None, model_name: str | None
) -> dict[str, Any]:
    """The node's `POST /api/v1/generate` body for a request to the node's model."""
    items: list[dict[str, Any]] = []
    sent_images = {id(item) for item in request.inputs}
    for message in request.messages:
        items.append({"type": "text", "role": TEXT_ROLES[message.role], "data": message.content})
        for image in message.images:
            if id(image) not in sent_images:  # images only the chat message carries
                items.append(_media_item(image.type, "user_image", image.data, image.mime_type))
    for item in request.inputs:
        if item.type == "text":
            items.append({"type": "text", "role": item.role, "data": item.text})
        else:
            items.append(_media_item(item.type, item.role, item.data, item.mime_type))
            if item.metadata:
                items[-1]["metadata"] = dict(item.metadata)
    if not items:
        items.append({"type": "text", "role": "user", "data": ""})
    return {
        "input_data": items,
        "binding_name": binding_name,
        "model_name": model_name,
        "generation_type": request.generation_type,
        "stream": stream,
        "parameters": {k: v for k, v in request.parameters.items() if _plain_json(v)},
    }


def _media_item(kind: str, role: str, data: bytes, mime: str | None) -> dict[str, Any]:
    return {"type": kind, "role": role, "data": encode_data(data), "mime_type": mime}


def _plain_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def output_of(item: Mapping[str, Any]) -> Output:
    """One of the node's `output` items as an Output (media decoded to its own bytes)."""
    kind = str(item.get("type") or "text")
    metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
    if kind == "text":
        thoughts = item.get("thoughts")
        return Output("text", text=str(item.get("data") or ""),
                      thoughts=thoughts if isinstance(thoughts, str) else None,
                      metadata=metadata or {})  # fmt: skip
    return Output(
        kind,
        data=b64decode(str(item.get("data") or "")),
        mime_type=str(item.get("mime_type") or "application/octet-stream"),
        metadata=metadata or {},
    )


def usage_of(value: Any) -> Usage | None:
    """The node's usage object as a Usage."""
    if not isinstance(value, dict):
        return None
    return Usage(int(value.get("prompt_tokens") or 0), int(value.get("completion_tokens") or 0))


def is_output_list(value: Any) -> bool:
    """True for a node's `output`: a list of item objects."""
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def result_of(answer: Mapping[str, Any]) -> Result:
    """The node's whole `generate` answer as a Result."""
    outputs = tuple(
        output_of(item) for item in answer.get("output") or [] if isinstance(item, dict)
    )
    return Result(outputs or (Output("text"),), usage_of(answer.get("usage")), finish_of(answer))


def finish_of(answer: Mapping[str, Any]) -> str:
    """The node's `finish_reason`, or "stop" when it sent none or something that is no text."""
    finish = answer.get("finish_reason")
    return finish if isinstance(finish, str) and finish else "stop"


def final_chunks(metadata: Mapping[str, Any], streamed_text: bool) -> list[Chunk]:
    """Chunks for the node's `final` event: media outputs (and text outputs the node never
    streamed, such as a transcript), then the usage and finish reason."""
    chunks: list[Chunk] = []
    for item in metadata.get("output") or []:
        if not isinstance(item, dict):
            continue
        output = output_of(item)
        if output.type != "text":
            chunks.append(Chunk(output=output))
        elif not streamed_text and (output.text or output.thoughts):
            chunks.append(Chunk(content=output.text, thoughts=output.thoughts or ""))
    usage = usage_of(metadata.get("usage"))
    chunks.append(Chunk(usage=usage, finish_reason=finish_of(metadata)))
    return chunks


def model_info(item: Mapping[str, Any]) -> ModelInfo | None:
    """One model of the node's listing, named `<node instance>/<model>`, with its metadata."""
    name, instance = item.get("name"), item.get("binding_instance")
    if not isinstance(name, str) or not isinstance(instance, str):
        return None
    details = dict(item.get("details") or {})
    details["node_instance"] = instance

    def number(key: str) -> int | None:
        value = item.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    family, quantization = item.get("family"), item.get("quantization")
    return ModelInfo(
        name=f"{instance}/{name}",
        family=family if isinstance(family, str) else None,
        size_bytes=number("size_bytes"),
        parameters=number("parameters"),
        quantization=quantization if isinstance(quantization, str) else None,
        context_length=number("context_length"),
        capabilities=frozenset(c for c in item.get("capabilities") or [] if c in CAPABILITIES),
        memory_bytes=number("memory_bytes"),
        loaded=item.get("loaded") is True,
        details=details,
    )


def error_class(kind: str) -> type[LollmsError]:
    """The error class whose `type` is `kind`; a 502 for one we do not know, and for the
    node refusing our key (401/403 there is the gateway's fault, never the client's)."""
    pending: list[type[LollmsError]] = [LollmsError]
    while pending:
        cls = pending.pop()
        if cls.type == kind and cls is not LollmsError:
            return BackendError if cls.status in (401, 403) else cls
        pending.extend(cls.__subclasses__())
    return BackendError


def lane_of(names: Mapping[str, str]) -> str:
    """The node's `instance/model` of a `_node_ref` answer."""
    return f"{names['binding_name']}/{names['model_name']}"


async def decode(raw: bytes) -> Any:
    """A node's whole JSON answer (a big one decoded in a worker thread)."""
    try:
        if len(raw) > BIG_ANSWER:
            return await asyncio.to_thread(json.loads, raw)
        return json.loads(raw)
    except ValueError as exc:
        raise BackendError(f"a node answered with something that is not JSON: {exc}") from None
