"""Entry point of the lollms-ollama plugin: the `ollama` binding type."""

from __future__ import annotations

from lollms_server.sdk import Binding, hookimpl

from .binding import OllamaBinding


@hookimpl
def register_bindings() -> list[type[Binding]]:
    """The ollama binding type."""
    return [OllamaBinding]
