"""Entry point of the lollms-llamacpp plugin: the `llamacpp` binding type."""

from __future__ import annotations

from lollms_server.sdk import Binding, hookimpl

from .binding import LlamaCppBinding


@hookimpl
def register_bindings() -> list[type[Binding]]:
    """The llamacpp binding type."""
    return [LlamaCppBinding]
