"""Page handlers: the dashboard and its self-refreshing status partial."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from .. import __version__, health
from ..keys import CONFIG, PLUGINS, REGISTRY, STARTED_AT

routes = web.RouteTableDef()
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def templates_dir() -> Path:
    """Core templates: inside the installed package, or the source tree's top-level folder."""
    packaged = Path(__file__).resolve().parent.parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "templates"


def setup_templates(app: web.Application, user_dir: Path) -> None:
    """Jinja2 with autoescape and async rendering; user templates override core ones."""
    loader = jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(str(user_dir)), jinja2.FileSystemLoader(str(templates_dir()))]
    )
    aiohttp_jinja2.setup(app, loader=loader, enable_async=True, autoescape=True)
    app.router.add_static("/static/", STATIC_DIR, name="static", append_version=True)


async def render(
    request: web.Request, page: str, partial: str, context: dict[str, Any]
) -> web.Response:
    """The full page, or only the partial when htmx asks for it (HX-Request)."""
    name = partial if request.headers.get("HX-Request") == "true" else page
    response = await aiohttp_jinja2.render_template_async(name, request, context)
    response.headers["Vary"] = "HX-Request"
    return response


@routes.get("/", name="dashboard")
async def dashboard(request: web.Request) -> web.Response:
    """Server status, binding instances and their health."""
    return await render(request, "dashboard.html", "_status.html", await _status(request))


async def _status(request: web.Request) -> dict[str, Any]:
    registry = request.app[REGISTRY]
    states = await health.check_all(registry)
    return {
        "version": __version__,
        "uptime_s": int(time.time() - request.app[STARTED_AT]),
        "listen": f"{request.app[CONFIG].host}:{request.app[CONFIG].port}",
        "instances": [
            {"name": b.instance_name, "type": b.name, "health": states[b.instance_name]}
            for b in registry
        ],
        "plugin_errors": request.app[PLUGINS].errors,
    }
