"""Entry point of the lollms-diffusers plugin: the `diffusers` binding type.

Importing this module imports no torch: the binding loads it in its worker thread on first use.
"""

from __future__ import annotations

from lollms_server.sdk import Binding, hookimpl

from .binding import DiffusersBinding


@hookimpl
def register_bindings() -> list[type[Binding]]:
    """The diffusers binding type."""
    return [DiffusersBinding]
