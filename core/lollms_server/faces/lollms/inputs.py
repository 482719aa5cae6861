"""lollms `input_data` as the core's typed objects: chat messages and media inputs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ...bindings import ChatMessage, InputItem
from ...httpkit.convert import DATA_URL, decode_data

CHAT_ROLES = {
    "user": "user",
    "user_prompt": "user",
    "assistant": "assistant",
    "assistant_response": "assistant",
    "system": "system",
    "system_context": "system",
}


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
