"""Entry point of the lollms-remote plugin: the `lollms` binding type."""

from __future__ import annotations

from lollms_server.sdk import Binding, hookimpl

from .binding import LollmsRemoteBinding


@hookimpl
def register_bindings() -> list[type[Binding]]:
    """The lollms binding type."""
    return [LollmsRemoteBinding]
