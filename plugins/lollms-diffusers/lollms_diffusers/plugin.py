"""Entry point of the lollms-diffusers plugin: the `diffusers` binding type.

Importing this module imports no torch: the binding loads it in its worker thread on first use.
"""

from __future__ import annotations

from aiohttp import web

from lollms_server import keys
from lollms_server.bindings import Binding
from lollms_server.hookspecs import hookimpl

from .binding import DiffusersBinding


@hookimpl
def register_bindings() -> list[type[Binding]]:
    """The diffusers binding type."""
    return [DiffusersBinding]


@hookimpl
def startup(app: web.Application) -> None:
    """Give diffusers instances the server's data dir (their default models folders)."""
    data_dir = app[keys.CONFIG].data_dir
    for binding in app[keys.REGISTRY]:
        if isinstance(binding, DiffusersBinding):
            binding.data_dir = data_dir
