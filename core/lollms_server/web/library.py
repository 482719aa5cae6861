"""Personalities and functions: browse with details, filter by text and category."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..keys import FUNCTIONS, PERSONALITIES
from .forms import query_text
from .render import page_handler, render

routes = web.RouteTableDef()


@routes.get("/personalities", name="personalities")
@page_handler
async def personalities(request: web.Request) -> web.Response:
    """Installed personalities; `q` searches, `category` keeps one category."""
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
    }
    return await render(request, "personalities.html", "_personalities.html", context)


@routes.get("/functions", name="functions")
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
            {"name": p, "type": spec.get("type", ""), "required": p in required}
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
