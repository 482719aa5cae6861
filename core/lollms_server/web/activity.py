"""Request counters for the dashboard: totals and errors per face, what is in flight now.

A middleware counts every request by face (`lollms`, `openai`, `ollama`, `web`; static files
are not counted) and keeps how many are running. A request is a *generation* when it is a POST
to a route that runs a model (see `GENERATION_ROUTES`) or a page stream; the dashboard shows
those separately. Queue depth belongs to the scheduler (resources); until one is installed it
is reported as unknown (None).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..errors import LollmsError

# last path segments of the API routes that run a model (lollms, OpenAI and Ollama faces)
GENERATION_ROUTES = frozenset(
    {
        "generate",
        "completions",
        "embeddings",
        "embed",
        "chat",
        "generations",
        "edits",
        "speech",
        "transcriptions",
        "translations",
    }
)
STREAM_PREFIX = "/playground/streams/"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def face_of(path: str) -> str | None:
    """Which face a path belongs to; None for static files (not counted)."""
    if path.startswith("/static/"):
        return None
    if path == "/v1" or path.startswith("/v1/"):
        return "openai"
    if path.startswith("/api/v1/"):
        return "lollms"
    if path.startswith("/api/"):
        return "ollama"
    return "web"


def is_generation(request: web.Request) -> bool:
    """True for a request that runs a model."""
    if request.path.startswith(STREAM_PREFIX):
        return request.method == "GET"
    if request.method != "POST":
        return False
    if request.path.startswith("/playground/"):
        return "/stop" not in request.path
    return request.path.rstrip("/").rsplit("/", 1)[-1] in GENERATION_ROUTES


@dataclass
class Activity:
    """Counters since the server started."""

    started: float = field(default_factory=time.time)
    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    generations: int = 0
    in_flight: int = 0
    generations_in_flight: int = 0
    queue_depth: int | None = None

    def snapshot(self) -> dict[str, Any]:
        """Plain data for the dashboard."""
        faces = sorted(set(self.requests) | set(self.errors))
        return {
            "faces": [
                {"face": f, "requests": self.requests[f], "errors": self.errors[f]} for f in faces
            ],
            "requests": sum(self.requests.values()),
            "errors": sum(self.errors.values()),
            "generations": self.generations,
            "in_flight": self.in_flight,
            "generations_in_flight": self.generations_in_flight,
            "queue_depth": self.queue_depth,
        }


def activity_middleware(activity: Activity) -> Any:
    """A middleware that counts requests into `activity`."""

    @web.middleware
    async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        face = face_of(request.path)
        if face is None:
            return await handler(request)
        generation = is_generation(request)
        activity.requests[face] += 1
        activity.in_flight += 1
        if generation:
            activity.generations += 1
            activity.generations_in_flight += 1
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except LollmsError as exc:
            status = exc.status
            raise
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 499  # the client went away: not an error of the server
            raise
        finally:
            activity.in_flight -= 1
            if generation:
                activity.generations_in_flight -= 1
            if status >= 400 and status != 499:
                activity.errors[face] += 1

    return count_requests
