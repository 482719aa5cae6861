"""Listing the models of binding instances: concurrently, bounded in time, errors kept."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from . import health
from .bindings import Binding, ModelInfo
from .errors import LollmsError
from .guard import guarded
from .registry import Registry


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


async def list_instance(binding: Binding) -> InstanceModels:
    """The models of one instance (bounded in time, errors kept)."""
    try:
        models = await guarded(binding, binding.list_models(), health.HEALTH_TIMEOUT_S)
    except LollmsError as exc:
        return InstanceModels(binding, [], exc)
    return InstanceModels(binding, list(models))


async def gather_models(bindings: Registry | Iterable[Binding]) -> list[InstanceModels]:
    """The models of every instance, listed concurrently, in the given order."""
    return list(await asyncio.gather(*(list_instance(b) for b in bindings)))
