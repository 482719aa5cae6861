"""Forgiving request schemas: unknown fields are dropped, as upstream lollms_server (pydantic)
did, and named in the `X-Lollms-Ignored-Fields` response header so that a typo stays visible.

The `/api/v1` routes that upstream defined load their bodies and queries with
`ForgivingSchema`; `/v1` and our own admin routes stay strict (`StrictSchema`).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from aiohttp import web
from marshmallow import EXCLUDE, pre_load

from .context_value import ContextValue
from .lean_schema import LeanSchema

HEADER = "X-Lollms-Ignored-Fields"
REQUEST_KEY = "lollms.ignored_fields"
MAX_NAMES = 32  # a body of thousands of unknown keys names the first ones only
MAX_NAME_CHARS = 64

_IGNORED: ContextVar[list[str] | None] = ContextVar("lollms_ignored_fields", default=None)


class ForgivingSchema(LeanSchema):
    """Unknown fields are ignored and recorded (when a `collecting` block is active)."""

    class Meta:
        unknown = EXCLUDE

    @pre_load
    def _record_unknown(self, data: Any, **kwargs: Any) -> Any:
        ignored = _IGNORED.get()
        if ignored is not None and isinstance(data, dict):
            known = {field.data_key or name for name, field in self.load_fields.items()}
            for key in data:
                name = _printable(str(key))
                if key not in known and name not in ignored and len(ignored) < MAX_NAMES:
                    ignored.append(name)
        return data


def _printable(name: str) -> str:
    """The name as it can go into a header: visible ASCII, no comma, bounded."""
    kept = "".join(c if 32 < ord(c) < 127 and c != "," else "?" for c in name)
    return kept[:MAX_NAME_CHARS] or "?"


def collecting() -> ContextValue[list[str]]:
    """Inside the `with` block, forgiving schemas append the unknown names to the list it
    gives (also from a worker thread started inside the block: it shares the list)."""
    return ContextValue(_IGNORED, [])


def add_ignored_header(request: web.Request, response: web.StreamResponse) -> None:
    """Part of `prepare_answer`: name the fields the request's schema ignored."""
    names = request.get(REQUEST_KEY)
    if names:
        response.headers[HEADER] = ", ".join(names)


def add_ignored_parameters(request: web.Request, names: Iterable[str]) -> None:
    """Name `parameters.<name>` in the header for parameters nothing reads (still passed on)."""
    ignored = request.get(REQUEST_KEY)
    if ignored is None:
        return
    for name in names:
        printable = _printable(f"parameters.{name}")
        if printable not in ignored and len(ignored) < MAX_NAMES:
            ignored.append(printable)
