"""Entry point of the lollms-llamacpp plugin: the `llamacpp` binding type."""

from __future__ import annotations

from aiohttp import web

from lollms_server import keys
from lollms_server.bindings import Binding
from lollms_server.hookspecs import hookimpl

from .binding import LlamaCppBinding


@hookimpl
def register_bindings() -> list[type[Binding]]:
    """The llamacpp binding type."""
    return [LlamaCppBinding]


@hookimpl
def startup(app: web.Application) -> None:
    """Give llamacpp instances the server's data dir (their default models folder)."""
    data_dir = app[keys.CONFIG].data_dir
    for binding in app[keys.REGISTRY]:
        if isinstance(binding, LlamaCppBinding):
            binding.data_dir = data_dir
