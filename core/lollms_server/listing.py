"""Listing the models of binding instances: concurrently, bounded in time, errors kept, and
only what the caller may use.

Every listing (`/v1/models`, `/api/tags`, `/api/ps`, `list_models`, `list_available_models`,
`list_bindings`, `list_active_bindings`, the pages) goes through `visible_bindings` and
`visible_models`: a key sees the instances and models its allow-lists admit, and a request
with no known caller sees nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from . import health
from .bindings import Binding, ModelInfo
from .errors import LollmsError, NotFound
from .fleet import FLEET_TYPE
from .guard import listed_models
from .masking import for_current_caller
from .registry import Registry
from .security.principal import current


@dataclass
class InstanceModels:
    """One instance's models, or the error its listing raised."""

    binding: Binding
    models: list[ModelInfo]
    error: LollmsError | None = None

    @property
    def name(self) -> str:
        """The instance name."""
        return self.binding.instance_name


def visible_bindings(bindings: Registry | Iterable[Binding]) -> list[Binding]:
    """The instances the current caller may use, in the given order."""
    principal = current()
    if principal is None:
        return []
    return [b for b in bindings if principal.may_use_instance(b.instance_name)]


def visible_routes(registry: Registry) -> list[str]:
    """The `[routes]` names (model aliases) the current caller may use: every target of the
    route (a route is refused to a key that may not use one of them; a fleet route: its model
    on a node: the others are left out of its targets)."""
    principal = current()
    if principal is None:
        return []
    names = []
    for name, route in registry.routes.items():
        targets = [ref.partition("/") for ref in route["targets"]]
        usable = bool(targets) and all(
            principal.may_use(instance, model) if model else principal.may_use_instance(instance)
            for instance, _, model in targets
        )
        if route.get("fleet"):
            nodes = [b for b in registry if b.name == FLEET_TYPE]
            model = route.get("model") or name
            usable = usable or any(principal.may_use(b.instance_name, model) for b in nodes)
        if usable:
            names.append(name)
    return names


def visible_models(binding: Binding, models: Iterable[ModelInfo]) -> list[ModelInfo]:
    """The models of `binding` the current caller may use."""
    principal = current()
    if principal is None:
        return []
    return [m for m in models if principal.may_use(binding.instance_name, m.name)]


def visible_instance(registry: Registry, name: str) -> Binding:
    """The instance called `name` if the caller may use it; NotFound otherwise (an instance
    outside the key's allow-list is answered as one that does not exist)."""
    binding = registry.instances.get(name)
    if binding is None or not visible_bindings([binding]):
        known = ", ".join(b.instance_name for b in visible_bindings(registry)) or "none"
        raise NotFound(
            f"no binding instance named {name!r}; instances: {known}", param="binding_name"
        )
    return binding


async def list_models_of(binding: Binding) -> list[ModelInfo]:
    """The visible models of one instance; a backend failure raises (never an empty list)."""
    models = await listed_models(binding, health.HEALTH_TIMEOUT_S)
    return visible_models(binding, models)


async def list_instance(binding: Binding) -> InstanceModels:
    """The visible models of one instance (bounded in time, errors kept)."""
    try:
        models = await list_models_of(binding)
    except LollmsError as exc:  # shown to the caller: a user key reads no server file paths
        return InstanceModels(binding, [], for_current_caller(exc))
    return InstanceModels(binding, models)


async def gather_models(bindings: Registry | Iterable[Binding]) -> list[InstanceModels]:
    """The visible models of every visible instance, listed concurrently, in the given order."""
    return list(await asyncio.gather(*(list_instance(b) for b in visible_bindings(bindings))))
