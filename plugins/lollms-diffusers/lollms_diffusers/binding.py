"""The `diffusers` binding: local image, video and sound diffusion models.

torch, diffusers and transformers are imported in the worker thread when the first model
loads, never when the plugin is imported or the binding built, so the server starts fast.
With `device = "auto"`, a CUDA build of torch and an NVIDIA GPU, the core chooses each model's
GPU (`gpu_placement`, decided in `startup()` without importing torch; see devices.py).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lollms_server.sdk import (
    BackendUnavailable,
    Binding,
    BindingContext,
    Chunk,
    GenerationRequest,
    Health,
    InvalidRequest,
    LollmsError,
    ModelInfo,
    ModelNotFound,
    Output,
)

from . import adapters
from .catalog import Catalog, ModelEntry
from .devices import chosen_device, cuda_may_be_available
from .plan import (
    PARAMETERS_READ,
    UPSCALERS,
    VIDEO_ROLES,
    Plan,
    make_plan,
    single_file_config,
)
from .runner import Cancelled, Job, Runner
from .settings import DiffusersConfig, DiffusersSettings

if TYPE_CHECKING:
    from .pipelines import Loaded

REQUIRED = ("torch", "diffusers", "transformers")
DATA_DIR_TYPES = ("tti", "i2i", "ttv", "ttm")
ADAPTER_KINDS = (adapters.LORAS, adapters.CONTROLNETS, adapters.IPADAPTERS)
STOP_TIMEOUT_S = 10.0
#: The input roles each generation type honours (the core refuses any other with a 400).
INPUT_ROLES = {
    "tti": frozenset({"negative_prompt", adapters.CONTROL_ROLE, adapters.STYLE_ROLE}),
    "i2i": frozenset(
        {
            "input_image",
            "user_image",
            "mask_image",
            "mask",
            "negative_prompt",
            adapters.CONTROL_ROLE,
            adapters.STYLE_ROLE,
        }
    ),
    "ttv": frozenset({"negative_prompt", *VIDEO_ROLES}),
    "ttm": frozenset({"negative_prompt"}),
}
log = logging.getLogger(__name__)


class DiffusersBinding(Binding):
    """Text-to-image, image-to-image (and inpainting), text-to-video and text-to-sound."""

    name = "diffusers"
    title = "Diffusers (local image, video and sound models)"
    description = (
        "Stable Diffusion, SDXL, AnimateDiff, AudioLDM and other diffusers pipelines from "
        "local folders, run in a worker thread with progress and cancellation."
    )
    capabilities = frozenset({"tti", "i2i", "ttv", "ttm", "stream", "load_unload"})
    ConfigSchema = DiffusersSettings
    settings: DiffusersConfig
    input_roles = INPUT_ROLES
    parameters_read = PARAMETERS_READ
    default_concurrency = 1  # one worker thread runs the pipelines

    def __init__(
        self,
        instance_name: str,
        config: Mapping[str, Any],
        *,
        context: BindingContext | None = None,
    ) -> None:
        super().__init__(instance_name, config, context=context)
        self.runner = Runner(instance_name)
        self.catalog = Catalog()
        self.last_job: Job[Any] | None = None
        self._loaded: OrderedDict[str, Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def folders(self) -> list[Path]:
        """The models folders: the configured ones, then the data dir's (when enabled)."""
        found = [Path(p).expanduser() for p in self.settings.models_folders]
        if self.settings.use_data_dir:
            models = self.context.models_dir
            found += [models / kind for kind in DATA_DIR_TYPES]
        return found

    def max_loaded(self) -> int | None:
        """The `max_loaded` setting: the server books it and unloads past it."""
        return self.settings.max_loaded

    def loaded_models(self) -> list[str]:
        """Names of the models in memory, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def loaded_pipeline(self, model: str) -> Any:
        """The base pipeline object of a loaded model, or None (for tests and tools)."""
        with self._lock:
            loaded = self._loaded.get(model)
        return loaded.pipe if loaded is not None else None

    async def health(self) -> Health:
        """Down without torch/diffusers; degraded when a configured folder is missing."""
        missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
        if missing:
            return Health("down", f"missing packages: pip install {' '.join(missing)}", 0.0)
        absent = [str(p) for p in map(Path, self.settings.models_folders) if not p.is_dir()]
        loaded = len(self.loaded_models())
        if absent:
            return Health("degraded", f"models folders missing: {', '.join(absent)}", 0.0)
        return Health("up", f"{loaded} model(s) loaded", 0.0)

    async def startup(self) -> None:
        """Decide whether the core chooses each model's GPU (without importing torch)."""
        setting = self.settings.device
        self.gpu_placement = await asyncio.to_thread(cuda_may_be_available, setting)
        if self.gpu_placement:
            # the core numbers GPUs as NVML does (PCI bus order); make torch's cuda:<n> agree
            os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
            log.info("%s: the core chooses each model's GPU", self.instance_name)

    def load_device(self, model: str) -> str:
        """The device `model` loads on: the `device` setting, or with "auto" where the core
        placed it ("auto" left to torch when the core did not choose)."""
        return chosen_device(self.settings.device, self.device_for(model), self.gpu_placement)

    async def list_models(self) -> list[ModelInfo]:
        """Every model in the folders, with family, capabilities and a memory estimate."""
        entries = await self._scan()
        fitting = await asyncio.to_thread(self._fitting_adapters, [e for _, e in entries])
        with self._lock:
            loaded = {name: item.bytes_used for name, item in self._loaded.items()}
            dtypes = {name: item.dtype for name, item in self._loaded.items()}
        return [
            self._info(entry, loaded.get(name), dtypes.get(name), fitting[name])
            for name, entry in entries
        ]

    def _fitting_adapters(self, entries: list[ModelEntry]) -> dict[str, dict[str, Any]]:
        """Per model: the LoRAs and ControlNets found that fit it (listed with their family)."""
        found = {kind: adapters.scan(self.folders(), kind) for kind in ADAPTER_KINDS}
        fitting: dict[str, dict[str, Any]] = {}
        for entry in entries:
            width = adapters.model_width(entry)
            fitting[entry.name] = {
                kind: [a.listed() for a in found[kind].values() if a.fits(entry, width)]
                for kind in ADAPTER_KINDS
            }
        return fitting

    def _info(
        self, entry: ModelEntry, used: int | None, dtype: str | None, fitting: dict[str, Any]
    ) -> ModelInfo:
        estimate_dtype = dtype or self._estimate_dtype()
        details = {**entry.details(), "memory_dtype": estimate_dtype}
        details["workflows"] = adapters.workflows(entry, entry.family in UPSCALERS)
        details.update({kind: found for kind, found in fitting.items() if found})
        if entry.single_file and not entry.error:
            try:
                single_file_config(entry, self.settings)
            except InvalidRequest as exc:
                details["error"] = exc.message
        return ModelInfo(
            name=entry.name,
            family=entry.family,
            size_bytes=entry.weights.size_bytes or None,
            parameters=entry.weights.parameters or None,
            quantization=entry.stored_dtype,
            capabilities=entry.capabilities | {"stream"} if entry.capabilities else frozenset(),
            memory_bytes=used if used is not None else entry.memory_bytes(estimate_dtype),
            loaded=used is not None,
            details=details,
        )

    def _estimate_dtype(self) -> str:
        dtype: str = self.settings.dtype
        if dtype != "auto":
            return dtype
        return "fp32" if self.settings.device in ("auto", "cpu") else "fp16"

    async def _scan(self) -> list[tuple[str, ModelEntry]]:
        folders = self.folders()
        if folders and not any(p.is_dir() for p in folders):
            shown = ", ".join(str(p) for p in folders)
            raise BackendUnavailable(
                f"no models folder of {self.instance_name!r} exists: {shown}",
                binding=self.instance_name,
            )
        entries = await asyncio.to_thread(self.catalog.scan, folders)
        return list(entries.items())

    async def _entry(self, model: str) -> ModelEntry:
        entries = dict(await self._scan())
        entry = entries.get(model)
        if entry is None:
            known = ", ".join(sorted(entries)) or "none"
            raise ModelNotFound(
                f"{self.instance_name!r} has no model {model!r}; models: {known}",
                binding=self.instance_name,
                param="model",
            )
        return entry

    async def load(self, model: str) -> int | None:
        """Load a model into memory (idempotent); returns the bytes of its weights."""
        entry = await self._entry(model)
        used: int = await self._call(
            f"load {model}", lambda job: self._load_sync(entry, job).bytes_used
        )
        return used

    async def unload(self, model: str) -> None:
        """Drop a model and free its memory (idempotent; waits for a running job)."""
        if model not in self.loaded_models():
            await self._entry(model)
        await self._call(f"unload {model}", lambda _job: self._drop(model))

    async def check_request(self, request: GenerationRequest) -> None:
        """The request's parameters checked against its model before it loads (a size off the
        8 grid, too many steps...): `make_plan`'s checks, without loading anything."""
        try:
            entry = await self._entry(request.model)
        except LollmsError:
            return  # a model the instance lacks, a missing folder: the generation says so
        make_plan(request, entry, self.settings)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Progress as `info` chunks (loading, step i/n), then one chunk per output."""
        entry = await self._entry(request.model)
        plan = make_plan(request, entry, self.settings)
        plan = await asyncio.to_thread(self._with_adapters, plan, request, entry)
        work = partial(self._generate_sync, entry, plan)
        job = self.runner.submit(f"{request.generation_type} {entry.name}", work)
        self.last_job = job
        try:
            while (event := await job.events.get()) is not None:
                yield Chunk(type="info", content=event.content, metadata=dict(event.metadata))
            outputs = await self._outcome(job)
        finally:
            job.cancel()  # a consumer that leaves early stops the pipeline at its next step
        for index, output in enumerate(outputs):
            yield Chunk(output=output, finish_reason="stop" if index == len(outputs) - 1 else None)

    def _with_adapters(self, plan: Plan, request: GenerationRequest, entry: ModelEntry) -> Plan:
        """The plan with the request's LoRAs, ControlNet and IP-Adapter, checked against those
        found (a 400 naming them)."""
        params = request.parameters
        width = adapters.model_width(entry)
        if params.get("loras") is not None:
            found = adapters.scan(self.folders(), adapters.LORAS)
            plan = replace(plan, loras=adapters.pick_loras(params["loras"], found, entry, width))
        if params.get("controlnet") is not None or request.inputs_with_role(adapters.CONTROL_ROLE):
            found = adapters.scan(self.folders(), adapters.CONTROLNETS)
            plan = replace(plan, controlnet=adapters.pick_controlnet(request, found, entry, width))
        if params.get("ip_adapter") is not None or request.inputs_with_role(adapters.STYLE_ROLE):
            found = adapters.scan(self.folders(), adapters.IPADAPTERS)
            plan = replace(plan, style=adapters.pick_style(request, found, entry, width))
        return plan

    async def shutdown(self) -> None:
        """Cancel running work, stop the worker thread, drop every model."""
        await self.runner.stop(STOP_TIMEOUT_S)
        with self._lock:
            self._loaded.clear()

    async def _call(self, name: str, work: Any) -> Any:
        job = self.runner.submit(name, work)
        return await self._outcome(job)

    async def _outcome(self, job: Job[Any]) -> Any:
        try:
            return await job.future
        except Cancelled as exc:
            raise BackendUnavailable(
                f"{self.instance_name!r} stopped before {job.name} finished",
                binding=self.instance_name,
            ) from exc

    # --- in the worker thread -------------------------------------------------------------

    def _generate_sync(self, entry: ModelEntry, plan: Plan, job: Job[Any]) -> list[Output]:
        loaded = self._load_sync(entry, job)
        job.check()
        outputs: list[Output] = self._pipelines().run(loaded, plan, job)
        return outputs

    def _load_sync(self, entry: ModelEntry, job: Job[Any]) -> Loaded:
        with self._lock:
            current = self._loaded.get(entry.name)
            if current is not None and current.entry == entry:
                self._loaded.move_to_end(entry.name)
                return current
        del current
        self._drop(entry.name)  # changed on disk since it was loaded
        while len(self.loaded_models()) >= self.settings.max_loaded:
            self._drop(self.loaded_models()[0])
        job.emit(f"loading {entry.name}", loading=entry.name)
        settings = replace(self.settings, device=self.load_device(entry.name))
        loaded: Loaded = self._pipelines().load(entry, settings)
        with self._lock:
            self._loaded[entry.name] = loaded
        return loaded

    def _drop(self, model: str) -> None:
        with self._lock:
            loaded = self._loaded.pop(model, None)
        if loaded is None:
            return
        pipelines = self._pipelines()
        device = loaded.device
        pipelines.release(loaded)
        del loaded
        pipelines.free(device)

    @staticmethod
    def _pipelines() -> Any:
        return importlib.import_module(f"{__package__}.pipelines")
