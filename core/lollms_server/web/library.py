"""Personalities and functions: browse with details, filter by text and category."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import admin_actions
from ..errors import NotFound
from ..keys import FUNCTIONS, PERSONALITIES, REQUEST_PRINCIPAL
from ..security.auth import requires
from .forms import query_text, read_action
from .render import page_handler, render

routes = web.RouteTableDef()
# an icon is an image: opened on its own (an SVG is a document) it runs no script at all and
# loads nothing; only the browser that may see it (a user key) keeps it a while
ICON_HEADERS = {
    "Cache-Control": "private, max-age=300",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
}


@routes.get("/personalities", name="personalities")
@requires("user")
@page_handler
async def personalities(request: web.Request) -> web.Response:
    """Installed personalities; `q` searches, `category` keeps one category."""
    return await _personalities_view(request)


async def _personalities_view(request: web.Request, **extra: Any) -> web.Response:
    store = request.app[PERSONALITIES]
    query = query_text(request, "q").lower()
    category = query_text(request, "category")
    items = []
    for name, personality in sorted(store.by_name.items(), key=lambda i: i[0].lower()):
        item = personality.to_dict()
        item["anti_prompts"] = list(personality.anti_prompts)
        text = " ".join(
            [name, item["author"], item["category"], item["language"], item["description"]]
            + item["tags"]
        ).lower()
        if category and item["category"] != category:
            continue
        if all(word in text for word in query.split()):
            items.append(item)
    context: dict[str, Any] = {
        "items": items,
        "total": len(store.by_name),
        "categories": sorted({p.category for p in store.by_name.values() if p.category}),
        "q": query_text(request, "q"),
        "category": category,
        "problems": store.problems,
        "can_reload": _is_admin(request),
        **extra,
    }
    return await render(request, "personalities.html", "_personalities.html", context)


@routes.get("/personalities/{name}/icon")
@requires("user")
async def icon(request: web.Request) -> web.StreamResponse:
    """A personality's icon from its `assets/` folder."""
    personality = request.app[PERSONALITIES].get(request.match_info["name"])
    if personality.icon is None:
        raise NotFound(f"personality {personality.name!r} has no icon")
    return web.FileResponse(personality.icon, headers=ICON_HEADERS)


@routes.post("/personalities/reload")
@requires("admin")
@page_handler
async def reload(request: web.Request) -> web.Response:
    """Read personalities and functions again (admin), then show the personalities."""
    await read_action(request)
    summary = await admin_actions.reload(request)
    notice = (
        f"reloaded: {len(summary['personalities'])} personalities, "
        f"{len(summary['functions'])} functions"
    )
    return await _personalities_view(request, notice=notice)


def _is_admin(request: web.Request) -> bool:
    principal = request.get(REQUEST_PRINCIPAL)
    return principal is not None and principal.is_admin


@routes.get("/functions", name="functions")
@requires("user")
@page_handler
async def functions(request: web.Request) -> web.Response:
    """Registered functions (tools) with their parameters; `q` searches, `source` filters."""
    registry = request.app[FUNCTIONS]
    query = query_text(request, "q").lower()
    source = query_text(request, "source")
    items = []
    for name, function in sorted(registry.by_name.items()):
        item = function.to_dict()
        required = set(item["parameters"].get("required", []))
        item["params"] = [
            {"name": p, "type": spec.get("type", "any"), "required": p in required}
            for p, spec in item["parameters"].get("properties", {}).items()
        ]
        if source and item["source"] != source:
            continue
        text = f"{name} {item['description']} {item['source']}".lower()
        if all(word in text for word in query.split()):
            items.append(item)
    context: dict[str, Any] = {
        "items": items,
        "total": len(registry.by_name),
        "sources": sorted({f.source for f in registry.by_name.values()}),
        "q": query_text(request, "q"),
        "source": source,
        "problems": registry.problems,
    }
    return await render(request, "functions.html", "_functions.html", context)
