"""Entry point of the lollms-openai plugin: the `openai` binding type."""

from __future__ import annotations

from lollms_server.sdk import Binding, hookimpl

from .binding import OpenAIBinding


@hookimpl
def register_bindings() -> list[type[Binding]]:
    """The openai binding type."""
    return [OpenAIBinding]
