"""Admin actions shared by the API and the pages: API keys and the library reload.

A page and its API twin call the same function here, so the same checks (no first admin key
over HTTP) and the same audit row apply whichever face was used. Model loads and unloads live
in `resources/actions.py`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from .keys import AUDIT, KEYSTORE, REQUEST_PRINCIPAL
from .library import reload_library
from .security.api_keys import KeyRecord
from .security.principal import Principal, Role

DAY_S = 86400


def actor(request: web.Request) -> dict[str, Any]:
    """Who did it, for the audit row: key id, client address, method and path."""
    principal: Principal | None = request.get(REQUEST_PRINCIPAL)
    return {
        "key_id": principal.key_id if principal else None,
        "client": principal.client if principal else None,
        "method": request.method,
        "path": request.path,
    }


async def create_key(
    request: web.Request,
    name: str,
    role: Role,
    *,
    expires_in_days: float | None = None,
    allowed_bindings: Iterable[str] | None = None,
    allowed_models: Iterable[str] | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    max_concurrent: int | None = None,
) -> tuple[str, KeyRecord]:
    """Make a key (never the first admin key: that one comes from the CLI); audited."""
    keystore = request.app[KEYSTORE]
    await keystore.refuse_first_admin(role)
    key, record = await keystore.create(
        name,
        role,
        expires_at=time.time() + expires_in_days * DAY_S if expires_in_days else None,
        allowed_bindings=allowed_bindings,
        allowed_models=allowed_models,
        rpm=rpm,
        tpm=tpm,
        max_concurrent=max_concurrent,
    )
    await request.app[AUDIT].record(
        "key_created", status=201, detail={"new_key_id": record.id, "role": record.role},
        **actor(request),
    )  # fmt: skip
    return key, record


async def revoke_key(request: web.Request, key_id: str) -> KeyRecord:
    """Revoke a key; audited."""
    record = await request.app[KEYSTORE].revoke(key_id)
    await request.app[AUDIT].record(
        "key_revoked", status=200, detail={"revoked_key_id": record.id}, **actor(request)
    )
    return record


async def reload(request: web.Request) -> dict[str, Any]:
    """Read personalities and functions again; audited with the number of problems."""
    summary = reload_library(request.app)
    await request.app[AUDIT].record(
        "library_reloaded", status=200, detail={"problems": len(summary["problems"])},
        **actor(request),
    )  # fmt: skip
    return summary
