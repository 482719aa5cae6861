"""The OpenAI-compatible API under /v1/."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
