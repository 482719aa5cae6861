"""The plugin contract: the hooks a lollms-server plugin may implement.

A plugin is a module (or object) exposed under the `lollms_server` entry-point group whose
functions are decorated with `hookimpl`. Every hook is a *collect* hook: the core calls all
implementations and gathers their results. Bindings are classes (see `bindings.Binding`),
registered through `register_bindings`; their async methods are the real operations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from aiohttp import web

    from .bindings import Binding

PROJECT = "lollms_server"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_bindings() -> list[type[Binding]]:  # type: ignore[empty-body]
    """Return the Binding subclasses this plugin provides."""


@hookspec
def register_personalities() -> list[Mapping[str, Any]]:  # type: ignore[empty-body]
    """Return personalities as dicts in the upstream `config.yaml` shape."""


@hookspec
def register_functions() -> list[Callable[..., Any]]:  # type: ignore[empty-body]
    """Return callables to expose as functions (tools); docstring and hints describe them."""


@hookspec
def register_routes() -> list[web.RouteDef]:  # type: ignore[empty-body]
    """Return aiohttp route definitions; they are mounted under `/-/<plugin>/`.

    Each handler declares who may call it with `lollms_server.sdk.requires("public"
    | "user" | "admin")`; a route that declares nothing is refused to everyone.
    """


@hookspec
def extra_template_vars() -> Mapping[str, Any]:  # type: ignore[empty-body]
    """Return variables made available to every page template."""


@hookspec
def startup(app: web.Application) -> None:
    """Called once when the application starts, after bindings are started."""
