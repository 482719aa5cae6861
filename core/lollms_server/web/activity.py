"""The dashboard's activity numbers, read from the metrics and the scheduler (no second count)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web

from ..httpkit.error_middleware import face_of
from ..keys import METRICS, SCHEDULER


def _samples(metric: Any, suffix: str = "_total") -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in metric.collect()
        for sample in family.samples
        if sample.name.endswith(suffix)
    ]


def snapshot(app: web.Application) -> dict[str, Any]:
    """Requests and errors per face since start, generations, what runs and waits now."""
    metrics = app[METRICS]
    requests: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for labels, value in _samples(metrics.requests):
        route = labels["route"]
        if route == "/static" or route.startswith("/static/"):
            continue
        face = face_of(route) if route != "unmatched" else "unmatched"
        requests[face] += int(value)
        if int(labels["status"]) >= 400:
            errors[face] += int(value)
    lanes = app[SCHEDULER].lanes.values()
    faces = sorted(set(requests) | set(errors))
    return {
        "faces": [{"face": f, "requests": requests[f], "errors": errors[f]} for f in faces],
        "requests": sum(requests.values()),
        "errors": sum(errors.values()),
        "generations": int(sum(v for _, v in _samples(metrics.generations))),
        "in_flight": int(sum(v for _, v in _samples(metrics.in_flight, ""))),
        "generations_in_flight": sum(lane.active for lane in lanes),
        "queue_depth": sum(len(lane.waiting) for lane in lanes),
    }
