"""Model lifecycle: which models are loaded and on which device, memory budgets per device
(RAM and each GPU) with LRU eviction of idle models, keep_alive, max loaded models, pinned
models, device pins, and one load per model at a time.

Only bindings that declare `load_unload` are managed; the others load on their own terms.
A model goes to RAM ("cpu") unless its binding asks for GPU placement (`gpu_placement`) or
`[resources] devices` pins it; the binding reads the choice with `device_for(model)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping

from ..bindings import Binding
from ..errors import (
    BackendError,
    InvalidRequest,
    LoadRefused,
    LollmsError,
    ModelLoadFailed,
    ModelNotFound,
    Overloaded,
)
from ..guard import guarded, listed_models
from ..registry import Registry, Target
from ..trace import current_trace
from ..tracing import span
from .books import Books, LoadedModel, MustWait
from .gpu import GpuReport
from .placement import CPU, Device, Memory, mib, parse_budget
from .scheduler import Scheduler

__all__ = ["Lifecycle", "LoadedModel", "parse_budget"]
log = logging.getLogger(__name__)
FOREVER = -1.0
WAIT_POLL_S = 0.1  # how often a load that waits for busy models looks again


class Lifecycle(Books):
    """Loads models before they run and unloads them when memory, count or keep_alive say so."""

    def __init__(
        self,
        registry: Registry,
        scheduler: Scheduler,
        *,
        memory: Memory | None = None,
        max_loaded: int = 0,
        max_loaded_per_instance: dict[str, int] | None = None,
        pinned: frozenset[str] = frozenset(),
        device_pins: Mapping[str, str] | None = None,
        keep_alive_s: float = 300.0,
        timeout_s: float = 300.0,
    ) -> None:
        super().__init__(
            scheduler,
            memory or Memory(),
            max_loaded,
            max_loaded_per_instance or {},
            pinned,
            device_pins or {},
        )
        self.registry = registry
        self.keep_alive_s = keep_alive_s
        self.timeout_s = timeout_s
        self.measured: dict[tuple[str, str], int] = {}  # bytes each model took when last loaded
        self._loading: dict[tuple[str, str], asyncio.Future[None]] = {}
        # models whose binding refused to load them ahead (LoadRefused): its backend loads them
        # on demand, so generations go straight to it instead of asking again each time
        self.on_demand: set[tuple[str, str]] = set()
        self._lock = asyncio.Lock()
        self._wanted: dict[tuple[str, str], int] = {}  # requests awaiting each load in progress
        self.loads = 0
        self.evictions = 0

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
        if key in self.on_demand and not explicit:
            return
        # the span opens first, so that the load task (its context copied) is its child
        with span("model.load", {"lollms.instance": key[0], "lollms.model": key[1]}):
            pending = self._loading.get(key)
            if pending is None or pending.done():  # done: a load dropped as nobody waited
                pending = asyncio.ensure_future(self._load(binding, target.model, explicit))
                self._loading[key] = pending
                pending.add_done_callback(
                    lambda done: self._loading.pop(key) if self._loading.get(key) is done else None
                )
            self._wanted[key] = self._wanted.get(key, 0) + 1
            trace = current_trace()
            before, started = (trace.backend_s if trace else 0.0), time.perf_counter()
            try:
                await asyncio.shield(pending)
            finally:
                if (left := self._wanted.pop(key) - 1) > 0:
                    self._wanted[key] = left
                if trace is not None:  # the load (whoever started it) and any wait for room in
                    # it are the backend's time: the whole wait, once (the load task that shares
                    # the starter's trace already counted its binding call)
                    trace.backend_s = before + time.perf_counter() - started

    def loading(self) -> list[tuple[str, str]]:
        """The models whose load is under way (or waits for busy models to make room)."""
        return [key for key, pending in self._loading.items() if not pending.done()]

    @contextlib.asynccontextmanager
    async def in_use(
        self, target: Target, keep_alive_s: float | None, needs: str | None = None
    ) -> AsyncIterator[None]:
        """Hold `target`'s model for a tokenize/embed call: busy while it runs, keep_alive after;
        a model listed without the capability the call `needs` is refused before it loads."""
        if needs is not None:
            await self._refuse_unable(target, needs)
        key = (target.binding.instance_name, target.model)
        self._calls[key] = self._calls.get(key, 0) + 1  # busy from before its load ends
        try:
            await self.ensure_loaded(target)
            yield
        finally:
            if (left := self._calls.pop(key) - 1) > 0:
                self._calls[key] = left
            self.release(target, keep_alive_s)

    async def _refuse_unable(self, target: Target, capability: str) -> None:
        """400 instead of a load when the binding lists the model with capabilities that lack
        `capability`; a loaded model, one listed without capabilities or not at all, or a
        listing that fails is left to the binding."""
        binding = target.binding
        key = (binding.instance_name, target.model)
        if "load_unload" not in binding.capabilities or key in self.loaded or key in self.on_demand:
            return
        try:
            models = await listed_models(binding, self.timeout_s)
        except LollmsError:
            return
        info = next((m for m in models if m.name == target.model), None)
        if info is None or not info.capabilities or capability in info.capabilities:
            return
        raise InvalidRequest(
            f"{target.ref} has no {capability} capability (its binding lists it with: "
            f"{', '.join(sorted(info.capabilities))}); name a model listed with {capability}",
            binding=binding.instance_name,
            param="model",
        )

    async def load(self, target: Target) -> int | None:
        """An explicit load (admin API, pages, Ollama face), within the budget; bytes used."""
        binding = target.binding
        if "load_unload" not in binding.capabilities:
            return await guarded(binding, binding.load(target.model), self.timeout_s)
        await self.ensure_loaded(target, explicit=True)
        entry = self.loaded.get((binding.instance_name, target.model))
        return entry.bytes if entry else None

    async def unload(self, target: Target) -> None:
        """An explicit unload (once a load in progress ends); the books first, then the binding."""
        binding, key = target.binding, (target.binding.instance_name, target.model)
        if (pending := self._loading.get(key)) is not None:
            await asyncio.wait([pending])  # its outcome (or error) is its own caller's
        self.loaded.pop(key, None)
        await guarded(binding, binding.unload(target.model), self.timeout_s)
        binding.placements.pop(target.model, None)

    def unload_refusal(self, target: Target) -> str | None:
        """Why an explicit unload of `target` is refused now (pinned, busy), or None."""
        instance, model = target.binding.instance_name, target.model
        if target.ref in self.pinned or instance in self.pinned:
            return f"{target.ref} is pinned ([resources] pinned); unpin it in the config first"
        lane = self.scheduler.lanes.get((instance, model))
        running = (lane.active if lane else 0) + self._calls.get((instance, model), 0)
        waiting = len(lane.waiting) if lane else 0
        if running or waiting:
            return f"{target.ref} is busy ({running} running, {waiting} waiting); retry when done"
        return None

    def devices(self, report: GpuReport) -> list[Device]:
        """RAM and every GPU of `report`, budget and bytes booked (read-only: pages, metrics)."""
        booked = self.used_by_device()
        return [self.memory.ram(booked.get(CPU, 0)), *self.memory.gpus_of(report, booked)]

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
        """Load `model`; while only busy models stand in the way, wait (up to queue_timeout_s)
        for them to finish and be unloaded, as a request waits for a slot in the queue."""
        waited, logged = time.monotonic(), False
        while True:
            try:
                return await self._load_now(binding, model, explicit)
            except MustWait as refusal:
                if not logged:
                    logged = True
                    log.info("%s/%s waits for busy models: %s", binding.instance_name, model,
                             refusal.message)  # fmt: skip
                if time.monotonic() - waited >= self.scheduler.queue_timeout_s:
                    raise Overloaded(
                        f"{refusal.message}; waited {self.scheduler.queue_timeout_s:g}s for them "
                        "([resources] queue_timeout_s)",
                        binding=refusal.binding,
                        retry_after=5.0,
                    ) from None
            await asyncio.sleep(WAIT_POLL_S)
            if (binding.instance_name, model) not in self._wanted:
                return  # every request that waited for it gave up (disconnected)

    async def _load_now(self, binding: Binding, model: str, explicit: bool) -> None:
        if not binding.books_memory:  # a node's model: the node makes room, in its own books
            return await self._load_on(binding, model, explicit, CPU, 0)
        # a model on another machine (a node, an ollama server) waits on no other load, and
        # no other load waits on its network call (a frozen node held every load for 300 s)
        async with self._lock if binding.loads_models else contextlib.nullcontext():
            estimate = await self._estimate(binding, model)
            # plan every unload first: a load refused by the budget unloads nothing
            leaving, device, evict = await self.plan(binding, model, estimate)
            key = (binding.instance_name, model)
            self.reserved[key] = (device, estimate)  # booked while its unloads and load run
            try:
                for entry in [*leaving, *evict]:  # max_loaded_models, then room on the device
                    await self._unload(entry, reason=f"to load {binding.instance_name}/{model}")
                await self._load_on(binding, model, explicit, device, estimate)
            finally:
                self.reserved.pop(key, None)

    async def _load_on(
        self, binding: Binding, model: str, explicit: bool, device: str, estimate: int
    ) -> None:
        """Load `model` on `device` (its room made) and book what it took."""
        binding.placements[model] = device
        before = await self.memory.gpu_used(device)
        try:
            measured = await guarded(binding, binding.load(model), self.timeout_s)
        except Exception as exc:
            binding.placements.pop(model, None)
            if binding.loads_models and type(exc) is BackendError:  # the model's file
                raise ModelLoadFailed(exc.message, binding=exc.binding) from exc
            if explicit or not isinstance(exc, (ModelNotFound, LoadRefused)):
                raise
            if isinstance(exc, LoadRefused):
                self.on_demand.add((binding.instance_name, model))
            log.debug("%s/%s: not loaded ahead; the binding resolves it", binding.name, model)
            return
        size = measured if isinstance(measured, int) and measured > 0 else 0
        after = await self.memory.gpu_used(device)
        if before is not None and after is not None:
            size = max(size, after - before)  # what NVML saw the load take on that GPU
        owned = binding.books_memory  # False: the node's size, shown but not booked here
        now = time.monotonic()
        expires = None if self.keep_alive_s < 0 else now + self.keep_alive_s  # -1: never
        entry = LoadedModel(binding.instance_name, model, size or estimate, now, now,
                            expires, device, owned)  # fmt: skip
        self.loaded[(binding.instance_name, model)] = entry
        self.reserved.pop((binding.instance_name, model), None)
        self.measured[(binding.instance_name, model)] = entry.bytes
        self.loads += 1
        if owned and entry.bytes > estimate:
            await self._settle(entry)

    async def _settle(self, entry: LoadedModel) -> None:
        """A load took more than estimated: unload idle models on its device until the books
        fit the budget again, or unload it and refuse (the next estimate uses what it took);
        MustWait when busy models could make room once done."""
        booked = self.used_by_device()
        devices = (
            [self.memory.ram(booked.get(CPU, 0))]
            if entry.device == CPU
            else await self.memory.gpus(booked)
        )
        device = next((d for d in devices if d.name == entry.device), None)
        if device is None or device.room >= 0:
            return
        evict = self._plan(device, 0, skip=(entry,))
        if evict is not None:
            for other in evict:
                await self._unload(other, reason=f"{entry.ref} took {mib(entry.bytes)} on load")
            return
        await self._unload(entry, reason=f"it took {mib(entry.bytes)}, more than fits")
        later = self._plan(device, 0, skip=(entry,), busy=True) is not None
        raise (MustWait if later else Overloaded)(
            f"{entry.ref} took {mib(entry.bytes)} once loaded, more than was estimated, and does "
            f"not fit: {device.describe()}, loaded there: {self._listing(device.name)}",
            binding=entry.instance,
            retry_after=5.0,
        )

    async def _estimate(self, binding: Binding, model: str) -> int:
        """What a load of `model` will take: what it took last time, else the binding's guess."""
        if (known := self.measured.get((binding.instance_name, model))) is not None:
            return known
        try:
            models = await listed_models(binding, self.timeout_s)
        except Exception:  # noqa: BLE001 - an estimate is best effort; the load itself reports
            return 0
        for info in models:
            if info.name == model:
                return int(info.memory_bytes or info.size_bytes or 0)
        return 0

    async def _unload(self, entry: LoadedModel, reason: str) -> None:
        binding = self.registry.get(entry.instance)
        log.info("unloading %s from %s (%s)", entry.ref, entry.device, reason)
        self.loaded.pop((entry.instance, entry.model), None)
        self.evictions += 1
        await guarded(binding, binding.unload(entry.model), self.timeout_s)
        binding.placements.pop(entry.model, None)

    async def forget_unlisted(self, binding: Binding) -> None:
        """After `binding` restarted: take out of the books its models it no longer lists (a
        dead model whose file is gone, which the restart dropped); they hold no memory now."""
        name = binding.instance_name
        booked = [entry for (instance, _), entry in self.loaded.items() if instance == name]
        if not booked or not binding.books_memory:
            return
        try:
            listed = {info.name for info in await listed_models(binding, self.timeout_s)}
        except LollmsError:
            return  # a listing that fails proves nothing: the books stay
        for entry in booked:
            if entry.model not in listed and not self._busy(entry):
                log.info("%s is no longer listed after a restart: out of the books", entry.ref)
                self.loaded.pop((name, entry.model), None)
                binding.placements.pop(entry.model, None)

    async def reap(self) -> None:
        """Unload idle models whose keep_alive ran out."""
        now = time.monotonic()
        for entry in list(self.loaded.values()):
            expired = entry.expires_at is not None and entry.expires_at <= now
            if expired and entry.owned and not self._busy(entry) and not self._pinned(entry):
                try:
                    await self._unload(entry, reason="keep_alive ran out")
                except Exception:  # the next round tries again
                    log.exception("could not unload %s", entry.ref)

    async def log_devices(self) -> None:
        """Say once which GPUs models may be placed on, or why there is none."""
        try:
            log.info("%s", await self.memory.devices_line())
        except Exception:  # a broken reader must not stop the reaper
            log.exception("could not read the GPUs")

    async def run(self) -> None:
        """Reap forever (until cancelled)."""
        await self.log_devices()
        while True:
            await asyncio.sleep(0.5)
            await self.reap()
