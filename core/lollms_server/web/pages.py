"""The web face: page routes, templates, static files and the request counters.

`setup(app, user_templates)` is all the application factory calls. Templates load from the
user's folder first (`<data dir>/templates`), then the core's; the Jinja2 environment renders
asynchronously with autoescape on. Each module of this package holds one page (or one family
of pages); this one only puts them together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
import psutil
from aiohttp import web
from aiohttp.web_urldispatcher import StaticResource

from ..httpkit.error_middleware import ErrorRenderer, add_error_renderer
from ..keys import PLUGINS, WEB_STREAMS
from . import admin, apidocs, bindings_page, chat, dashboard, library, media, models_page, streams
from .filters import FILTERS
from .render import is_page_path, page_error
from .streams import StreamRegistry

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
routes: list[web.AbstractRouteDef] = [
    *dashboard.routes,
    *bindings_page.routes,
    *models_page.routes,
    *library.routes,
    *chat.routes,
    *media.routes,
    *streams.routes,
    *admin.routes,
    *apidocs.routes,
]


def templates_dir() -> Path:
    """Core templates: inside the installed package, or the source tree's top-level folder."""
    packaged = Path(__file__).resolve().parent.parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "templates"


def setup(app: web.Application, user_templates: Path) -> None:
    """Mount the pages and static files, set up Jinja2, the page-stream registry and the
    pages' own error page (for a page path nothing answered, or a wrong method on one)."""
    app.router.add_routes(routes)
    add_error_renderer(app, ErrorRenderer(is_page_path, page_error))
    setup_templates(app, user_templates)
    app[WEB_STREAMS] = StreamRegistry()
    psutil.cpu_percent(interval=None)  # the first reading starts the CPU measurement window


def setup_templates(app: web.Application, user_dir: Path) -> None:
    """Jinja2 with autoescape and async rendering; user templates override core ones."""
    loader = jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(str(user_dir)), jinja2.FileSystemLoader(str(templates_dir()))]
    )
    env = aiohttp_jinja2.setup(
        app, loader=loader, enable_async=True, autoescape=True, filters=FILTERS
    )
    env.globals.update(_plugin_template_vars(app))
    static = StaticFiles("/static", str(STATIC_DIR), name="static", append_version=True)
    app.router.register_resource(static)


class StaticFiles(StaticResource):
    """The static folder; a missing file raises 404 like any unknown path (aiohttp's own answers
    a bare 404 past the error middleware), so it gets the same error page and headers."""

    def _resolve_path_to_response(self, unresolved_path: Path) -> web.StreamResponse:
        response = super()._resolve_path_to_response(unresolved_path)
        if isinstance(response, web.FileResponse) and not unresolved_path.is_file():
            raise web.HTTPNotFound()
        return response


def _plugin_template_vars(app: web.Application) -> dict[str, Any]:
    """Variables from plugins' `extra_template_vars` hooks, for every template."""
    merged: dict[str, Any] = {}
    plugins = app.get(PLUGINS)
    if plugins is None:
        return merged
    for _name, values in plugins.collect("extra_template_vars"):
        merged.update(values)
    return merged
