"""The models page: every model of every instance, grouped by generation type, filterable."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..bindings import GENERATION_TYPES
from ..keys import REGISTRY
from ..listing import gather_models
from ..security.auth import requires
from .catalog import GENERATION_LABELS, model_rows
from .forms import query_text
from .render import page_handler, render

routes = web.RouteTableDef()

# (key of the row, column title): a column is shown only when some row of the group has a value
COLUMNS = (
    ("binding_instance", "Instance"),
    ("binding_type", "Binding"),
    ("family", "Family"),
    ("parameters", "Parameters"),
    ("size_bytes", "Size"),
    ("quantization", "Quantization"),
    ("context_length", "Context"),
    ("memory_bytes", "Memory"),
    ("features", "Features"),
    ("loaded", "Loaded"),
    ("compatible", "Compatible bindings"),
)
SEARCHED = ("name", "binding_instance", "binding_type", "family", "quantization")


@routes.get("/models", name="models")
@requires("user")
@page_handler
async def models(request: web.Request) -> web.Response:
    """Models grouped by generation type; `q` searches, `type` keeps one generation type."""
    query = query_text(request, "q").lower()
    wanted = query_text(request, "type")
    listings = await gather_models(request.app[REGISTRY])
    rows = [row for row in model_rows(listings) if _matches(row, query)]
    groups = []
    for generation_type in GENERATION_TYPES:
        if wanted and wanted != generation_type:
            continue
        members = [row for row in rows if generation_type in row["generation_types"]]
        if members:
            groups.append(
                {
                    "type": generation_type,
                    "label": GENERATION_LABELS[generation_type],
                    "rows": members,
                    "columns": _columns(members),
                }
            )
    context: dict[str, Any] = {
        "groups": groups,
        "errors": [listing for listing in listings if listing.error is not None],
        "q": query_text(request, "q"),
        "type": wanted,
        "types": [(t, GENERATION_LABELS[t]) for t in GENERATION_TYPES],
        "total": len(rows),
    }
    return await render(request, "models.html", "_models.html", context)


def _matches(row: dict[str, Any], query: str) -> bool:
    if not query:
        return True
    text = " ".join(str(row.get(key) or "") for key in SEARCHED)
    text += " " + " ".join(row["capabilities"])
    return all(word in text.lower() for word in query.split())


def _columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (key, title)
        for key, title in COLUMNS
        if any(row.get(key) not in (None, "", [], False) for row in rows) or key == "loaded"
    ]
