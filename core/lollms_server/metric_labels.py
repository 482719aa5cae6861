"""Bounded metric label values: a name a client chose is a label only when the server knows it.

Every label value makes a time series that Prometheus keeps. Model names come from clients, so
a model is a label value only once its binding has listed it (listings are refreshed at most
every REFRESH_S per instance, in the background); any other name is `other`. HTTP methods
outside the standard set are `other` too; routes are labelled by their pattern elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from . import health
from .bindings import Binding
from .errors import LollmsError
from .guard import listed_models

OTHER = "other"
REFRESH_S = 60.0
HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
)


def method_label(method: str) -> str:
    """The method, or `other` for a non-standard one (aiohttp accepts any token)."""
    return method if method in HTTP_METHODS else OTHER


class KnownModels:
    """The models each instance has listed: the only model names used as label values."""

    def __init__(self) -> None:
        self.names: dict[str, frozenset[str]] = {}
        self.listed_at: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def label(self, instance: str, model: str, binding: Binding | None = None) -> str:
        """`model` when `instance` listed it, else `other` (and, given the binding, a
        background re-listing when the last one is older than REFRESH_S)."""
        if model in self.names.get(instance, ()):
            return model
        if binding is not None:
            self.refresh_soon(binding)
        return OTHER

    def add(self, instance: str, models: Iterable[str]) -> None:
        """Remember names an instance is known to serve (its listing, its configured default)."""
        self.names[instance] = self.names.get(instance, frozenset()) | frozenset(models)

    def refresh_soon(self, binding: Binding) -> None:
        """List the binding's models in the background, unless it was listed recently."""
        name = binding.instance_name
        if time.monotonic() - self.listed_at.get(name, -REFRESH_S) < REFRESH_S:
            return
        self.listed_at[name] = time.monotonic()
        task = asyncio.get_running_loop().create_task(self._refresh(binding))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, binding: Binding) -> None:
        try:  # every model the instance has, whoever's request asked: this is the server's view
            models = await listed_models(binding, health.HEALTH_TIMEOUT_S)
        except LollmsError:
            return  # down: its names stay unknown until a later listing
        self.add(binding.instance_name, (m.name for m in models))
