"""Admin routes of the lollms API: API keys, the audit log, model load/unload."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ... import admin_actions
from ...httpkit.endpoint import endpoint
from ...keys import AUDIT, KEYSTORE, REGISTRY
from ...registry import Target
from ...resources.actions import Action, change_model
from .schemas import AuditQuerySchema, KeyCreateSchema, ModelActionSchema, ReloadSchema

routes = web.RouteTableDef()
PREFIX = "/api/v1"
TAG = "admin"


@routes.get(f"{PREFIX}/keys")
@endpoint("Every API key (never their secrets)", tag=TAG, access="admin")
async def list_keys(request: web.Request) -> web.Response:
    """List keys."""
    return web.json_response({"keys": [k.to_dict() for k in await request.app[KEYSTORE].list()]})


@routes.post(f"{PREFIX}/keys")
@endpoint("Create an API key; the key is shown once, in this response", tag=TAG,
          body=KeyCreateSchema, access="admin")  # fmt: skip
async def create_key(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Create a key."""
    key, record = await admin_actions.create_key(
        request, body.pop("name"), body.pop("role"), **body
    )
    no_store = {"Cache-Control": "no-store"}  # the secret must not outlive this response
    return web.json_response({"key": key, **record.to_dict()}, status=201, headers=no_store)


@routes.delete(PREFIX + "/keys/{key_id}")
@endpoint("Revoke an API key", tag=TAG, access="admin")
async def revoke_key(request: web.Request) -> web.Response:
    """Revoke a key."""
    record = await admin_actions.revoke_key(request, request.match_info["key_id"])
    return web.json_response(record.to_dict())


@routes.get(f"{PREFIX}/audit")
@endpoint("The audit log, newest first", tag=TAG, query=AuditQuerySchema, access="admin")
async def audit_log(request: web.Request, query: dict[str, Any]) -> web.Response:
    """Query the audit log."""
    return web.json_response({"events": await request.app[AUDIT].query(**query)})


async def _model_action(request: web.Request, body: dict[str, Any], action: Action) -> web.Response:
    binding = request.app[REGISTRY].get(body["binding_name"])
    result = await change_model(request, Target(binding, body["model_name"]), action)
    return web.json_response(
        {"binding_instance": binding.instance_name, "model_name": body["model_name"],
         "status": "loaded" if action == "load" else "unloaded", "memory_bytes": result}
    )  # fmt: skip


@routes.post(f"{PREFIX}/load_model")
@endpoint("Load a model now", tag=TAG, body=ModelActionSchema, access="admin")
async def load_model(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Load a model."""
    return await _model_action(request, body, "load")


@routes.post(f"{PREFIX}/unload_model")
@endpoint("Unload a model and free its memory", tag=TAG, body=ModelActionSchema, access="admin")
async def unload_model(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Unload a model."""
    return await _model_action(request, body, "unload")


@routes.post(f"{PREFIX}/reload_personalities")
@endpoint(
    "Read personalities and functions again from their folders and plugins",
    tag=TAG,
    body=ReloadSchema,
    access="admin",
)
async def reload_personalities(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Reload personalities and functions without restarting."""
    return web.json_response(await admin_actions.reload(request))
