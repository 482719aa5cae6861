"""Entry point of the lollms-audio plugin: the `audio` binding type."""

from __future__ import annotations

from aiohttp import web

from lollms_server import keys
from lollms_server.bindings import Binding
from lollms_server.hookspecs import hookimpl

from .binding import AudioBinding


@hookimpl
def register_bindings() -> list[type[Binding]]:
    """The audio binding type."""
    return [AudioBinding]


@hookimpl
def startup(app: web.Application) -> None:
    """Give audio instances the server's data dir (their default models folders)."""
    data_dir = app[keys.CONFIG].data_dir
    for binding in app[keys.REGISTRY]:
        if isinstance(binding, AudioBinding):
            binding.data_dir = data_dir
