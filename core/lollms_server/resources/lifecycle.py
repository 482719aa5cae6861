"""Model lifecycle: which models are loaded, a memory budget with LRU eviction of idle models,
keep_alive, max loaded models, pinned models, and one load per model at a time.

Only bindings that declare `load_unload` are managed; the others load on their own terms.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass

import psutil

from ..bindings import Binding
from ..errors import ConfigError, ModelNotFound, Overloaded
from ..guard import guarded
from ..registry import Registry, Target
from .scheduler import Scheduler

log = logging.getLogger(__name__)
UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.I)
FOREVER = -1.0


def parse_budget(value: str | float | int | None, total: int) -> int | None:
    """Bytes of a budget: a number of bytes, "8GiB"/"512MB", or "75%" of `total`; None = none."""
    if value in (None, "", 0):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    text = value.strip()
    if text.endswith("%"):
        return int(total * float(text[:-1]) / 100)
    match = SIZE.match(text)
    if not match:
        raise ConfigError(f"resources.ram_budget: got {value!r}; allowed: bytes, '8GiB' or '75%'")
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


@dataclass
class LoadedModel:
    """One loaded model and what the manager knows of it."""

    instance: str
    model: str
    bytes: int
    loaded_at: float
    last_used: float
    expires_at: float | None  # None: stays loaded until evicted or unloaded

    @property
    def ref(self) -> str:
        """`<instance>/<model>`."""
        return f"{self.instance}/{self.model}"


class Lifecycle:
    """Loads models before they run and unloads them when memory, count or keep_alive say so."""

    def __init__(
        self,
        registry: Registry,
        scheduler: Scheduler,
        *,
        ram_budget_bytes: int | None = None,
        max_loaded: int = 0,
        max_loaded_per_instance: dict[str, int] | None = None,
        pinned: frozenset[str] = frozenset(),
        keep_alive_s: float = 300.0,
        timeout_s: float = 300.0,
    ) -> None:
        self.registry = registry
        self.scheduler = scheduler
        self.ram_budget_bytes = ram_budget_bytes
        self.max_loaded = max_loaded
        self.max_loaded_per_instance = max_loaded_per_instance or {}
        self.pinned = pinned
        self.keep_alive_s = keep_alive_s
        self.timeout_s = timeout_s
        self.loaded: dict[tuple[str, str], LoadedModel] = {}
        self._loading: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._lock = asyncio.Lock()
        self.loads = 0
        self.evictions = 0

    def used_bytes(self) -> int:
        """Bytes the loaded models take, as estimated or measured."""
        return sum(m.bytes for m in self.loaded.values())

    async def ensure_loaded(self, target: Target, *, explicit: bool = False) -> None:
        """Load `target`'s model unless it is loaded; concurrent callers share one load.

        Before a generation (`explicit` false) a name the binding does not list is left to the
        binding, which may resolve it (an alias such as OpenAI's "whisper-1") or refuse it.
        """
        binding = target.binding
        if "load_unload" not in binding.capabilities:
            return
        key = (binding.instance_name, target.model)
        if key in self.loaded:
            self.loaded[key].last_used = time.monotonic()
            return
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load(binding, target.model, explicit))
            self._loading[key] = pending
            pending.add_done_callback(lambda _: self._loading.pop(key, None))
        await asyncio.shield(pending)

    async def load(self, target: Target) -> int | None:
        """An explicit load (admin API, pages, Ollama face), within the budget; bytes used."""
        binding = target.binding
        if "load_unload" not in binding.capabilities:
            return await guarded(binding, binding.load(target.model), self.timeout_s)
        await self.ensure_loaded(target, explicit=True)
        entry = self.loaded.get((binding.instance_name, target.model))
        return entry.bytes if entry else None

    async def unload(self, target: Target) -> None:
        """An explicit unload; the model leaves the books before the binding frees it."""
        binding = target.binding
        self.loaded.pop((binding.instance_name, target.model), None)
        await guarded(binding, binding.unload(target.model), self.timeout_s)

    def release(self, target: Target, keep_alive_s: float | None) -> None:
        """A generation ended: start the model's keep_alive (0 unloads it once idle)."""
        key = (target.binding.instance_name, target.model)
        entry = self.loaded.get(key)
        if entry is None:
            return
        keep = self.keep_alive_s if keep_alive_s is None else keep_alive_s
        entry.last_used = time.monotonic()
        entry.expires_at = None if keep < 0 else entry.last_used + keep

    async def _load(self, binding: Binding, model: str, explicit: bool) -> None:
        async with self._lock:
            estimate = await self._estimate(binding, model)
            await self._make_room(binding.instance_name, model, estimate)
            try:
                measured = await guarded(binding, binding.load(model), self.timeout_s)
            except ModelNotFound:
                if explicit:
                    raise
                log.debug("%s/%s: not loaded ahead; the binding resolves it", binding.name, model)
                return
            now = time.monotonic()
            size = measured if isinstance(measured, int) and measured > 0 else estimate
            self.loaded[(binding.instance_name, model)] = LoadedModel(
                binding.instance_name, model, size, now, now, now + self.keep_alive_s
            )
            self.loads += 1

    async def _estimate(self, binding: Binding, model: str) -> int:
        try:
            models = await guarded(binding, binding.list_models(), self.timeout_s)
        except Exception:  # noqa: BLE001 - an estimate is best effort; the load itself reports
            return 0
        for info in models:
            if info.name == model:
                return int(info.memory_bytes or info.size_bytes or 0)
        return 0

    def _busy(self, entry: LoadedModel) -> bool:
        lane = self.scheduler.lanes.get((entry.instance, entry.model))
        return lane is not None and (lane.active > 0 or bool(lane.waiting))

    def _evictable(self) -> list[LoadedModel]:
        """Idle, unpinned models, least recently used first."""
        return sorted(
            (
                m
                for m in self.loaded.values()
                if not self._busy(m) and m.ref not in self.pinned and m.instance not in self.pinned
            ),
            key=lambda m: m.last_used,
        )

    def _over(self, instance: str, incoming: int) -> bool:
        if (
            self.ram_budget_bytes is not None
            and self.used_bytes() + incoming > self.ram_budget_bytes
        ):
            return True
        if self.max_loaded and len(self.loaded) + 1 > self.max_loaded:
            return True
        per = self.max_loaded_per_instance.get(instance)
        mine = sum(1 for m in self.loaded.values() if m.instance == instance)
        return bool(per) and mine + 1 > per  # type: ignore[operator]

    async def _make_room(self, instance: str, model: str, incoming: int) -> None:
        while self._over(instance, incoming):
            candidates = self._evictable()
            per = self.max_loaded_per_instance.get(instance)
            if per and self.ram_budget_bytes is None and not self.max_loaded:
                candidates = [m for m in candidates if m.instance == instance]
            if not candidates:
                loaded = ", ".join(
                    f"{m.ref} ({m.bytes // 2**20} MiB{', busy' if self._busy(m) else ''}"
                    f"{', pinned' if m.ref in self.pinned else ''})"
                    for m in self.loaded.values()
                )
                raise Overloaded(
                    f"{instance}/{model} ({incoming // 2**20} MiB) does not fit: loaded are "
                    f"{loaded or 'none'}, and none of them can be unloaded now",
                    binding=instance,
                    retry_after=5.0,
                )
            await self._unload(candidates[0], reason="to make room")

    async def _unload(self, entry: LoadedModel, reason: str) -> None:
        binding = self.registry.get(entry.instance)
        log.info("unloading %s (%s)", entry.ref, reason)
        self.loaded.pop((entry.instance, entry.model), None)
        self.evictions += 1
        await guarded(binding, binding.unload(entry.model), self.timeout_s)

    async def reap(self) -> None:
        """Unload idle models whose keep_alive ran out."""
        now = time.monotonic()
        for entry in list(self.loaded.values()):
            expired = entry.expires_at is not None and entry.expires_at <= now
            if expired and not self._busy(entry) and entry.ref not in self.pinned:
                try:
                    await self._unload(entry, reason="keep_alive ran out")
                except Exception:  # the next round tries again
                    log.exception("could not unload %s", entry.ref)

    async def run(self) -> None:
        """Reap forever (until cancelled)."""
        while True:
            await asyncio.sleep(0.5)
            await self.reap()


def total_ram() -> int:
    """Bytes of RAM of this machine."""
    return int(psutil.virtual_memory().total)
