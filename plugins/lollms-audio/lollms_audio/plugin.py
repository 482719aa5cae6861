"""Entry point of the lollms-audio plugin: the `audio` binding type."""

from __future__ import annotations

from lollms_server.sdk import Binding, hookimpl

from .binding import AudioBinding


@hookimpl
def register_bindings() -> list[type[Binding]]:
    """The audio binding type."""
    return [AudioBinding]
