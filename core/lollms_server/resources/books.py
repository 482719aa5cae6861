"""The lifecycle's books: the loaded models, and plans of what to unload so that one more
fits `max_loaded_models` and a device's room. A plan only reads the books; `Lifecycle` carries
it out (so a refused load unloads nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..bindings import Binding
from ..errors import BackendUnavailable, Overloaded
from ..security.principal import Principal
from .placement import ANY_GPU, CPU, Device, Memory, mib
from .scheduler import Scheduler

__all__ = ["Books", "LoadedModel", "MustWait"]
log = logging.getLogger(__name__)


class MustWait(Overloaded):
    """A load that does not fit now but will once busy models are done (they can go then)."""


@dataclass
class LoadedModel:
    """One loaded model and what the manager knows of it."""

    instance: str
    model: str
    bytes: int
    loaded_at: float
    last_used: float
    expires_at: float | None  # None: stays loaded until evicted or unloaded
    device: str = CPU
    owned: bool = True  # False: a node's model, which its node keeps or unloads on its own

    @property
    def ref(self) -> str:
        """`<instance>/<model>`."""
        return f"{self.instance}/{self.model}"


class Books:
    """Which models are loaded where, which are busy or pinned, and what a load would unload."""

    def __init__(
        self,
        scheduler: Scheduler,
        memory: Memory,
        max_loaded: int,
        max_loaded_per_instance: dict[str, int],
        pinned: frozenset[str],
        device_pins: Mapping[str, str],
    ) -> None:
        self.scheduler = scheduler
        self.memory = memory
        self.max_loaded = max_loaded
        self.max_loaded_per_instance = max_loaded_per_instance
        self.pinned = pinned
        self.device_pins = dict(device_pins)
        self.loaded: dict[tuple[str, str], LoadedModel] = {}
        self._calls: dict[tuple[str, str], int] = {}  # tokenize/embed calls running per model
        # loads under way (device, estimated bytes): counted by every plan, never unloaded
        self.reserved: dict[tuple[str, str], tuple[str, int]] = {}

    def used_bytes(self) -> int:
        """Bytes the loaded models take here (a node's take none), as estimated or measured."""
        return sum(m.bytes for m in self.loaded.values() if m.owned)

    def used_by_device(self, seen_by: Principal | None = None) -> dict[str, int]:
        """Bytes the loaded models take on each device (a node's models take none here); with
        `seen_by`, only the models that caller may use (what it is shown of a device)."""
        used: dict[str, int] = {}
        for entry in self.visible_to(seen_by):
            used[entry.device] = used.get(entry.device, 0) + (entry.bytes if entry.owned else 0)
        return used

    def visible_to(self, seen_by: Principal | None) -> list[LoadedModel]:
        """The loaded models `seen_by` may use (every one when None: the server itself)."""
        entries = self.loaded.values()
        return [e for e in entries if seen_by is None or seen_by.may_use(e.instance, e.model)]

    def _busy(self, entry: LoadedModel) -> bool:
        key = (entry.instance, entry.model)
        lane = self.scheduler.lanes.get(key)
        return key in self._calls or (lane is not None and (lane.active > 0 or bool(lane.waiting)))

    def unloads_at(self, entry: LoadedModel) -> float | None:
        """When keep_alive unloads `entry` (time.monotonic()); None: never (pinned, or -1)."""
        return None if self._pinned(entry) else entry.expires_at

    def _pinned(self, entry: LoadedModel) -> bool:
        return entry.ref in self.pinned or entry.instance in self.pinned

    def _evictable(self, busy: bool = False) -> list[LoadedModel]:
        """Idle (or, with `busy`, also busy) unpinned models of ours, least recently used
        first."""
        free = (
            m
            for m in self.loaded.values()
            if m.owned and (busy or not self._busy(m)) and not self._pinned(m)
        )
        return sorted(free, key=lambda m: m.last_used)

    async def plan(
        self, binding: Binding, model: str, incoming: int
    ) -> tuple[list[LoadedModel], str, list[LoadedModel]]:
        """What to unload for `max_loaded_models`, the device for `model`, what to unload there.
        Overloaded if it cannot fit; MustWait if it can once the busy models are done."""
        try:
            leaving = self._count_plan(binding.instance_name, model)
            return (leaving, *await self._place(binding, model, incoming, leaving))
        except Overloaded as refusal:
            if self.reserved:  # loads under way: once booked, they may be unloaded
                raise MustWait(refusal.message, binding=refusal.binding) from None
            try:  # the same plan with the busy models gone
                later = self._count_plan(binding.instance_name, model, busy=True)
                await self._place(binding, model, incoming, later, busy=True)
            except Overloaded:
                raise refusal from None
            raise MustWait(refusal.message, binding=refusal.binding, retry_after=5.0) from None

    def _listing(self, device: str | None = None) -> str:
        """The loaded models (on `device`), with why each cannot go, for messages."""
        return (
            ", ".join(
                f"{m.ref} ({mib(m.bytes)}{', busy' if self._busy(m) else ''}"
                f"{', pinned' if self._pinned(m) else ''})"
                for m in self.loaded.values()
                if device is None or m.device == device
            )
            or "none"
        )

    def _count_plan(self, instance: str, model: str, busy: bool = False) -> list[LoadedModel]:
        """Idle models to unload (LRU first) so that one more fits `max_loaded_models`."""
        leaving: list[LoadedModel] = []
        while True:
            staying = [m.instance for m in self.loaded.values() if m.owned and m not in leaving]
            staying += [name for name, _ in self.reserved]
            per = self.max_loaded_per_instance.get(instance)
            idle = [m for m in self._evictable(busy) if m not in leaving]
            if per and staying.count(instance) + 1 > per:
                candidates = [m for m in idle if m.instance == instance]
                limit = f"{instance} may have {per} loaded ([bindings.{instance}])"
            elif self.max_loaded and len(staying) + 1 > self.max_loaded:
                candidates = idle
                limit = f"{self.max_loaded} models may be loaded in all ([resources])"
            else:
                return leaving
            if not candidates:
                raise Overloaded(
                    f"{instance}/{model} does not fit: max_loaded_models: {limit}; loaded are "
                    f"{self._listing()}, and none of them can be unloaded now",
                    binding=instance,
                    retry_after=5.0,
                )
            leaving.append(candidates[0])

    async def _candidates(
        self, binding: Binding, model: str, leaving: list[LoadedModel]
    ) -> list[list[Device]]:
        """The devices `model` may go to, by preference (GPUs before RAM), `leaving` gone."""
        instance = binding.instance_name
        pin = self.device_pins.get(f"{instance}/{model}") or self.device_pins.get(instance)
        booked = self.used_by_device()
        for entry in leaving:
            booked[entry.device] -= entry.bytes
        for device, size in self.reserved.values():
            booked[device] = booked.get(device, 0) + size
        ram = self.memory.ram(booked.get(CPU, 0))
        if pin == CPU or (pin is None and not binding.gpu_placement):
            return [[ram]]
        gpus = await self.memory.gpus(booked)
        if pin is None:
            return [gpus, [ram]] if gpus else [[ram]]
        chosen = gpus if pin == ANY_GPU else [d for d in gpus if d.name == pin]
        if not chosen:
            raise BackendUnavailable(
                f"{instance}/{model} cannot be loaded: {self.memory.missing(pin, gpus)} "
                "(see [resources] devices)",
                binding=instance,
            )
        return [chosen]

    def _plan(
        self, device: Device, incoming: int, skip: Sequence[LoadedModel] = (), busy: bool = False
    ) -> list[LoadedModel] | None:
        """Idle models to unload from `device` (LRU first, never one of `skip`: those kept or
        already leaving) so that `incoming` fits; None: no way."""
        need = incoming - device.room
        evict: list[LoadedModel] = []
        for entry in self._evictable(busy):
            if need <= 0:
                break
            if entry.device == device.name and entry not in skip:
                evict.append(entry)
                need -= entry.bytes
        return evict if need <= 0 else None

    async def _place(
        self,
        binding: Binding,
        model: str,
        incoming: int,
        leaving: list[LoadedModel],
        busy: bool = False,
    ) -> tuple[str, list[LoadedModel]]:
        """The device for `model` and the idle models to unload there to make room."""
        groups = await self._candidates(binding, model, leaving)
        for group in groups:
            plans = [
                (d, p) for d in group if (p := self._plan(d, incoming, leaving, busy)) is not None
            ]
            if not plans:
                continue
            device, evict = min(plans, key=lambda p: (len(p[1]), -p[0].room))
            if (device.name != CPU or len(groups) > 1) and not busy:
                log.info("placing %s/%s on %s", binding.instance_name, model, device.describe())
            return device.name, evict
        where = "; ".join(
            f"{d.describe()}, loaded there: {self._listing(d.name)}" for g in groups for d in g
        )
        raise Overloaded(
            f"{binding.instance_name}/{model} ({mib(incoming)}) does not fit: {where}; "
            "unloading the idle, unpinned models would not free enough",
            binding=binding.instance_name,
            retry_after=5.0,
        )
