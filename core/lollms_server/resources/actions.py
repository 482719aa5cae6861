"""Explicit model loads and unloads: the one path of the admin API, the pages and Ollama.

Whichever face asks, `change_model` applies the same rules: the admin role, the key's
allow-list, no unloading a pinned or busy model, and one audit row per attempt (refusals
included).
"""

from __future__ import annotations

import time
from typing import Literal

from aiohttp import web

from ..errors import Conflict, Forbidden, LollmsError
from ..keys import AUDIT, LIFECYCLE
from ..registry import Target
from ..security.principal import caller

Action = Literal["load", "unload"]


async def change_model(request: web.Request, target: Target, action: Action) -> int | None:
    """Load or unload `target`'s model for the request's caller; bytes used after a load."""
    principal = caller()
    started = time.monotonic()
    status = 500
    try:
        if not principal.is_admin:
            raise Forbidden(f"to {action} a model needs the admin role")
        principal.check_target(target.binding.instance_name, target.model)
        lifecycle = request.app[LIFECYCLE]
        used: int | None = None
        if action == "load":
            used = await lifecycle.load(target)
        else:
            refusal = lifecycle.unload_refusal(target)
            if refusal is not None:
                raise Conflict(f"cannot unload: {refusal}", binding=target.binding.instance_name)
            await lifecycle.unload(target)
        status = 200
        return used
    except LollmsError as exc:
        status = exc.status
        raise
    finally:
        await request.app[AUDIT].record(
            action,
            status=status,
            instance=target.binding.instance_name,
            model=target.model,
            duration_ms=round((time.monotonic() - started) * 1000, 3),
            key_id=principal.key_id,
            client=principal.client,
            method=request.method,
            path=request.path,
        )
