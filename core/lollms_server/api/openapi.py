"""OpenAPI document generated from the routes' marshmallow schemas."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
