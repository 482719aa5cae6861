"""What a node tells a gateway about its load: fresh figures on every API answer's headers
(the total queue depth, the depth of each busy `instance/model` lane, the free memory), and the
whole picture at `GET /api/v1/status` (queue depth per model, free memory, loaded models), so
that a gateway's `least-busy` and `most-room` routes choose on live numbers."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from ...httpkit.endpoint import endpoint
from ...keys import DRAIN, LIFECYCLE, REQUEST_PRINCIPAL, SCHEDULER
from ...node_headers import FREE_MEMORY_HEADER, MODEL_QUEUE_HEADER, QUEUE_HEADER, model_queue_header
from ...resources.gpu import GpuReport
from ...resources.placement import Device
from ...security.principal import NOBODY, Principal

routes = web.RouteTableDef()


def queue_depths(app: web.Application, principal: Principal | None) -> dict[str, int]:
    """Generations running or waiting, per busy `instance/model` lane `principal` may use
    (an idle lane is 0, absent: lanes are made for any name a client sends)."""
    depths = {}
    for (instance, model), lane in app[SCHEDULER].lanes.items():
        depth = lane.active + len(lane.waiting)
        if depth and principal is not None and principal.may_use(instance, model):
            depths[f"{instance}/{model}"] = depth
    return depths


def queue_total(app: web.Application) -> int:
    """Generations running or waiting on this server, all lanes together."""
    return sum(lane.active + len(lane.waiting) for lane in app[SCHEDULER].lanes.values())


def devices(app: web.Application) -> list[Device]:
    """RAM and the GPUs of the latest reading, with the bytes the loaded models take."""
    lifecycle = app[LIFECYCLE]
    return lifecycle.devices(lifecycle.memory.report or GpuReport())


def free_memory(app: web.Application) -> int | None:
    """Bytes one more model may take on the roomiest device, or None when nothing bounds it."""
    if app[LIFECYCLE].memory.bounds_nothing():  # the default: no device list per answer
        return None
    rooms = [device.room for device in devices(app)]
    finite = [room for room in rooms if room != math.inf]
    return max(0, int(max(finite))) if finite else None


def add_load_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Part of `prepare_answer`: the queue depth and free memory on answers to API callers (the
    busy lanes' header only when one is busy)."""
    principal = request.get(REQUEST_PRINCIPAL)  # the caller's context is gone by now
    if principal is None or not request.path.startswith(("/api/", "/v1/")):
        return
    app = request.app
    response.headers[QUEUE_HEADER] = str(queue_total(app))
    lanes = model_queue_header(queue_depths(app, principal))
    if lanes:  # no busy lane the caller may use: no header (an empty one trips some proxies)
        response.headers[MODEL_QUEUE_HEADER] = lanes
    room = free_memory(app)
    if room is not None:
        response.headers[FREE_MEMORY_HEADER] = str(room)


@routes.get("/api/v1/status")
@endpoint(
    "Load of this server: queue depth per model, free memory, loaded models, whether it drains",
    tag="lollms",
)
async def status(request: web.Request) -> web.Response:
    """Queue depth per busy lane, memory per device, the loaded models and those loading (those
    the caller may use: the bytes used on a device count only those; its room counts all), and
    whether the server drains (a gateway tells a planned stop from a failure by it)."""
    app = request.app
    principal = request.get(REQUEST_PRINCIPAL)
    used = app[LIFECYCLE].used_by_device(principal or NOBODY)
    body: dict[str, Any] = {
        "queue_depth": queue_depths(app, principal),
        "free_memory_bytes": free_memory(app),
        "devices": [
            {
                "name": d.name,
                "total_bytes": d.total,
                "free_bytes": d.free,
                "used_by_models_bytes": used.get(d.name, 0),
                "room_bytes": None if d.room == math.inf else max(0, int(d.room)),
            }
            for d in devices(app)
        ],
        "loaded": sorted(entry.ref for entry in app[LIFECYCLE].visible_to(principal or NOBODY)),
        "loading": sorted(
            f"{instance}/{model}"
            for instance, model in app[LIFECYCLE].loading()
            if principal is not None and principal.may_use(instance, model)
        ),
        "draining": app[DRAIN].draining,
    }
    return web.json_response(body)
