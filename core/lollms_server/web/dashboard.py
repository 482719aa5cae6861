"""The dashboard: server, binding health, loaded models (and the device each is on), memory per
device (what the loaded models take, budget, room), host and GPU use, request counts.

The page includes `_status.html`, which polls itself (htmx `every 5s`) so the numbers refresh
without reloading the page.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import psutil
from aiohttp import web

from .. import health
from ..bindings import Binding, Health
from ..circuit import CircuitBreaker
from ..keys import (
    BREAKERS,
    CONFIG,
    LIFECYCLE,
    PLUGINS,
    REGISTRY,
    REQUEST_PRINCIPAL,
    STARTED_AT,
    WEB_STREAMS,
)
from ..listing import InstanceModels, gather_models, visible_bindings
from ..masking import text_for_current_caller
from ..resources import gpu
from ..resources.lifecycle import Lifecycle
from ..security.auth import requires
from ..security.principal import NOBODY, Principal
from .activity import snapshot as activity_snapshot
from .render import page_handler, render

routes = web.RouteTableDef()
REFRESH_S = 5


@routes.get("/", name="dashboard")
@requires("user")
@page_handler
async def dashboard(request: web.Request) -> web.Response:
    """Server status, instance health, loaded models, resources, activity."""
    return await render(request, "dashboard.html", "_status.html", await status(request))


async def status(request: web.Request) -> dict[str, Any]:
    """Everything the status partial shows, read now."""
    registry = request.app[REGISTRY]
    bindings = visible_bindings(registry)
    states, listings, gpus = await asyncio.gather(
        health.check_all(bindings), gather_models(bindings), asyncio.to_thread(gpu.probe)
    )
    lifecycle, breakers = request.app[LIFECYCLE], request.app[BREAKERS]
    loaded: list[dict[str, Any]] = [
        {
            "instance": listing.name,
            "model": model,
            "device": device_of(lifecycle, registry.get(listing.name), model.name),
        }
        for listing in listings
        for model in listing.models
        if model.loaded
    ]
    activity = activity_snapshot(request.app)
    activity["page_streams"] = request.app[WEB_STREAMS].running
    config = request.app[CONFIG]
    return {
        "uptime_s": int(time.time() - request.app[STARTED_AT]),
        "started_at": request.app[STARTED_AT],
        "listen": f"{config.host}:{config.port}",
        "instances": [
            instance_row(states[listing.name], listing, breakers.of(listing.name))
            for listing in listings
        ],
        "nodes": fleet_nodes(bindings, states),
        "no_instances": not registry.instances,
        "loaded": loaded,
        "loaded_bytes": sum(item["model"].memory_bytes or 0 for item in loaded),
        "devices": device_memory(lifecycle, gpus, request.get(REQUEST_PRINCIPAL) or NOBODY),
        "host": host_usage(),
        "gpu": gpus,
        "activity": activity,
        "plugin_errors": request.app[PLUGINS].shown_errors(),
        "refresh_s": REFRESH_S,
    }


def instance_row(state: Health, listing: InstanceModels, breaker: CircuitBreaker) -> dict[str, Any]:
    """One row of the instances table: health, circuit, and only real errors as the last one."""
    errors = [listing.error.message] if listing.error else []
    if state.state != "up" and state.detail:
        errors.append(state.detail)
    last = text_for_current_caller(breaker.last_error or "")
    if last and last not in errors:
        errors.append(last)
    return {
        "name": listing.name,
        "type": listing.binding.name,
        "health": state,
        "models": len(listing.models),
        "error": listing.error,
        "circuit": breaker.current_state().replace("_", "-"),
        "last_error": "; ".join(errors),
    }


def fleet_nodes(bindings: list[Binding], states: dict[str, Health]) -> list[dict[str, Any]]:
    """Rows of the fleet panel: each remote lollms node's health and its `node_status()`."""
    rows = []
    for binding in bindings:
        describe = getattr(binding, "node_status", None)  # plugins/lollms-remote's binding
        if callable(describe):
            rows.append({"name": binding.instance_name, "health": states[binding.instance_name],
                         **describe()})  # fmt: skip
    return rows


def device_of(lifecycle: Lifecycle, binding: Binding, model: str) -> str:
    """Where a loaded model is: the lifecycle's books, else what its binding was told, else ""."""
    entry = lifecycle.loaded.get((binding.instance_name, model))
    if entry is not None:
        return entry.device
    return binding.device_for(model) or ""


def device_memory(
    lifecycle: Lifecycle, report: gpu.GpuReport, seen_by: Principal
) -> list[dict[str, Any]]:
    """RAM and each GPU: bytes the loaded models `seen_by` may use take there (and how many),
    its budget and room (None: none; the room counts every model)."""
    used, visible = lifecycle.used_by_device(seen_by), lifecycle.visible_to(seen_by)
    return [
        {
            "name": device.name,
            "booked": used.get(device.name, 0),
            "budget": device.budget,
            "room": None if device.room == math.inf else max(int(device.room), 0),
            "models": sum(1 for m in visible if m.device == device.name),
        }
        for device in lifecycle.devices(report)
    ]


def host_usage() -> dict[str, Any]:
    """CPU and memory of the machine and of this process (psutil)."""
    memory = psutil.virtual_memory()
    process = psutil.Process()
    with process.oneshot():
        rss = process.memory_info().rss
        threads = process.num_threads()
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "cpu_count": psutil.cpu_count() or 0,
        "load": _load_average(),
        "ram_total": memory.total,
        "ram_used": memory.total - memory.available,
        "ram_percent": memory.percent,
        "process_rss": rss,
        "process_threads": threads,
    }


def _load_average() -> tuple[float, float, float] | None:
    try:
        one, five, fifteen = psutil.getloadavg()
        return one, five, fifteen
    except (AttributeError, OSError):
        return None
