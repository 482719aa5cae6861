"""The `llamacpp` binding: local GGUF models, each served by its own llama.cpp process.

`load(model)` spawns `python -m lollms_llamacpp.worker` for the model (xllamacpp's server on a
free 127.0.0.1 port, continuous batching over `n_parallel` slots); `unload(model)` ends that
process, which is what frees its memory. A request for a model that is not loaded loads it
first. A process that dies (a crash in llama.cpp, an OOM kill) fails its in-flight requests
with a 503 naming the model and shows in health as `down` (or `degraded`) and `restartable`:
the core's health monitor then calls `restart()`, which starts it again; a request that comes
first restarts it itself. Where the core chooses devices (`gpu_placement`), each worker is
started on the device `device_for(model)` names (see devices.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from lollms_server.sdk import (
    BackendUnavailable,
    Binding,
    BindingContext,
    Chunk,
    GenerationRequest,
    Health,
    HealthState,
    InvalidRequest,
    ModelInfo,
    ModelNotFound,
    Result,
    RetryPolicy,
    Upstream,
    monotonic_ms,
    upstream_chat,
)

from .catalog import Catalog, ModelFile, model_info
from .devices import gpu_placement, placement
from .models import ModelFolders
from .process import ModelProcess, unavailable
from .settings import LlamaCppSettings
from .tool_use import LLAMA_PARAMETERS, asks_for_tools, call_start, prepare, worker_args
from .worker import ALIAS

#: A local process either answers or is dead: one quick retry (a stale pooled connection).
LOCAL_RETRY = RetryPolicy(attempts=2, backoff_s=0.05, max_backoff_s=0.1, max_retry_after_s=1.0)


class LlamaCppBinding(ModelFolders, Binding):
    """Local GGUF models served by managed llama.cpp server processes."""

    name = "llamacpp"
    title = "llama.cpp (local GGUF models)"
    description = "GGUF models from local folders, one llama.cpp server process per loaded model."
    capabilities = frozenset({"ttt", "stream", "load_unload", "embeddings", "tools"})
    ConfigSchema = LlamaCppSettings

    def __init__(
        self,
        instance_name: str,
        config: Mapping[str, Any],
        *,
        context: BindingContext | None = None,
    ) -> None:
        super().__init__(instance_name, config, context=context)
        self.log = logging.getLogger(f"lollms_llamacpp.{instance_name}")
        self._catalog: Catalog | None = None
        self._processes: dict[str, ModelProcess] = {}
        self._upstreams: dict[str, Upstream] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._crashed: dict[str, str] = {}  # model -> how its process died, until it runs again

    # -- models ---------------------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        """Every GGUF model of the folders, with header metadata and loaded state."""
        files = await self._scan()
        infos = []
        for name, file in files.items():
            process = self._processes.get(name)
            loaded = process is not None and process.alive
            memory = process.rss_bytes() if process is not None and loaded else None
            infos.append(
                model_info(
                    file,
                    embedding=self.is_embedding(file),
                    tools=self.serves_tools(file),
                    loaded=loaded,
                    memory_bytes=memory,
                )
            )
        return infos

    # -- lifecycle --------------------------------------------------------------------------

    async def startup(self) -> None:
        """Decide whether the core places models on GPUs, warn about models the settings name
        that no folder holds, then load the `preload` models."""
        self.gpu_placement = await gpu_placement(self.settings.gpu_placement, self.log)
        if self.catalog.existing_folders():
            missing = self.missing_models(await self._scan())
            if missing:
                self.log.warning(
                    "instance %r: settings name models that no models folder holds (%s): %s",
                    self.instance_name,
                    ", ".join(str(folder) for folder in self.catalog.existing_folders()),
                    "; ".join(missing),
                )
        for model in self.settings.preload:
            await self.load(model)

    async def shutdown(self) -> None:
        """Stop every model process."""
        self._crashed.clear()
        await asyncio.gather(*(self._discard(model) for model in list(self._processes)))

    async def restart(self) -> None:
        """Start again every model process that died (the core's health monitor calls this);
        BackendUnavailable naming the models that would not start."""
        models = sorted(self._dead())
        results = await asyncio.gather(*(self._revive(m) for m in models), return_exceptions=True)
        failed = [(m, r) for m, r in zip(models, results, strict=True) if r is not None]
        if failed:
            reasons = "; ".join(f"{model!r}: {getattr(e, 'message', e)}" for model, e in failed)
            raise BackendUnavailable(
                f"{self.instance_name!r} could not restart the llama.cpp process of {reasons}",
                binding=self.instance_name,
            ) from failed[0][1]

    async def _revive(self, model: str) -> None:
        async with self._lock(model):
            process = self._processes.get(model)
            if process is not None and process.alive:
                return  # a request restarted it first
            if process is None and model not in self._crashed:
                return  # unloaded meanwhile
            try:
                await self._file(model)
            except ModelNotFound:
                return await self._forget(model)
            await self._start(model)

    async def _forget(self, model: str) -> None:
        """A dead model whose file is gone cannot come back: drop it, saying so once (the core's
        books follow the listing, which no longer names it)."""
        died = self._dead().get(model, "it died")
        self._crashed.pop(model, None)
        await self._discard(model)
        self.log.error(
            "model %r of instance %r is gone from the models folders and its llama.cpp process "
            "died (%s): it is unloaded and will not be restarted", model, self.instance_name, died,
        )  # fmt: skip

    def _dead(self) -> dict[str, str]:
        """Models whose process died (not unloaded) and is not running again: how it died."""
        dead = {
            model: f"exit status {process.returncode}"
            for model, process in self._processes.items()
            if not process.alive and not process.stopping
        }
        return {**self._crashed, **dead}

    async def load(self, model: str) -> int | None:
        """Start the model's process (idempotent); return its resident memory in bytes."""
        process, _ = await self._serving(model)
        return process.rss_bytes()

    async def unload(self, model: str) -> None:
        """End the model's process, freeing its memory (idempotent)."""
        self._crashed.pop(model, None)  # unloaded on purpose: nothing to restart
        if model not in self._processes:
            await self._file(model)  # unknown names are a 404, known ones a no-op
            return
        async with self._lock(model):
            await self._discard(model)

    def _lock(self, model: str) -> asyncio.Lock:
        return self._locks.setdefault(model, asyncio.Lock())

    async def _serving(self, model: str) -> tuple[ModelProcess, Upstream]:
        """The model's running process and its client, starting (or restarting) it if needed."""
        process = self._processes.get(model)
        if process is None or not process.alive:
            async with self._lock(model):
                process = self._processes.get(model)
                if process is None or not process.alive:
                    process = await self._start(model)
        return process, self._upstreams[model]

    async def _start(self, model: str) -> ModelProcess:
        file = await self._file(model)
        if model in self._processes:
            dead = self._processes[model]
            self.log.warning("%s had died (status %s): restarting it", dead.what(), dead.returncode)
            self._crashed[model] = f"exit status {dead.returncode}"
            await self._discard(model)
        elif model in self._crashed:
            self.log.warning("restarting the llama.cpp process of model %r", model)
        process = ModelProcess(
            self.instance_name, model, self._worker_args(file), self.log, self._worker_env(model)
        )
        await process.start(self.settings.startup_timeout_s)
        self._processes[model] = process
        self._crashed.pop(model, None)
        self._upstreams[model] = Upstream(
            self.instance_name,
            process.url,
            api_key=process.api_key,
            label=process.what(),
            read_timeout_s=self.settings.read_timeout_s,
            retry=LOCAL_RETRY,
        )
        return process

    def _worker_args(self, file: ModelFile) -> list[str]:
        settings = self.settings
        args = ["--model", str(file.path), "--alias", ALIAS]
        args += ["--n-ctx", str(settings.n_ctx), "--n-parallel", str(settings.n_parallel)]
        if settings.n_threads:
            args += ["--n-threads", str(settings.n_threads)]
        args += self._placement(file.name)[0]
        if self.is_embedding(file):
            args.append("--embedding")
        args += worker_args(self.chat_template(file.name))
        extra = self.extra_args(file.name)
        if extra:
            args += ["--extra", json.dumps(extra)]
        return args

    def extra_args(self, model: str) -> dict[str, Any]:
        """`extra_args`, with the model's `model_extra_args` entry over it."""
        per_model = self.settings.model_extra_args.get(model) or {}
        return {**self.settings.extra_args, **per_model}

    def _worker_env(self, model: str) -> dict[str, str]:
        """Environment variables of the model's worker (the GPU it may see)."""
        return self._placement(model)[1]

    def _placement(self, model: str) -> tuple[list[str], dict[str, str]]:
        """Worker arguments and environment for the device the core placed `model` on."""
        return placement(self.device_for(model), self.gpu_placement, self.settings.n_gpu_layers)

    def max_concurrency(self, model: str) -> int:
        """The worker's `n_parallel` slots."""
        return self.settings.n_parallel

    def context_length(self, model: str) -> int | None:
        """One slot's context: `n_ctx` split over `n_parallel` (None: the GGUF's own)."""
        n_ctx = self.settings.n_ctx
        return n_ctx // self.max_concurrency(model) if n_ctx else None

    async def _prepared(self, request: GenerationRequest) -> GenerationRequest:
        """The request as llama.cpp must get it (see tool_use); 501: tools it would drop; 400:
        a prompt that cannot fit (see refuse_unfittable)."""
        await self.refuse_unfittable(request)
        if asks_for_tools(request):
            self.require_tools(await self._file(request.model))
        start = call_start(self.chat_template(request.model), self.settings.tool_call_start)
        return prepare(request, start, self.instance_name)

    async def _discard(self, model: str) -> None:
        process = self._processes.pop(model, None)
        upstream = self._upstreams.pop(model, None)
        if process is not None:  # first the process, so requests in flight see it go
            running = process.alive
            await process.stop(self.settings.stop_timeout_s)
            if running:  # a dead one was said to be dead
                self.log.info("%s stopped (status %s)", process.what(), process.returncode)
        if upstream is not None:
            await upstream.close()

    async def health(self) -> Health:
        """Down without a models folder or when a loaded model's process is dead or mute
        (degraded when others run); `restartable` when a process died (see `restart`)."""
        started = monotonic_ms()
        catalog = self.catalog
        if not catalog.existing_folders():
            shown = ", ".join(str(folder) for folder in catalog.folders)
            return Health("down", f"no models folder exists ({shown})", monotonic_ms() - started)
        timeout = self.settings.health_timeout_s
        processes = list(self._processes.values())
        problems = [p for p in await asyncio.gather(*(p.ping(timeout) for p in processes)) if p]
        problems += [
            f"llama.cpp process of model {model!r} (instance {self.instance_name!r}) died "
            f"({why}) and did not start again"
            for model, why in sorted(self._crashed.items())
            if model not in self._processes
        ]
        try:
            missing = self.missing_models(await asyncio.to_thread(catalog.scan))
        except OSError:  # a file removed while it was read: the next check sees the result
            missing = []
        latency = monotonic_ms() - started
        if missing:
            missing = [
                f"models named in settings but not in the models folders: {'; '.join(missing)}"
            ]
        if problems:
            total = len(processes) + sum(1 for m in self._crashed if m not in self._processes)
            state: HealthState = "down" if len(problems) == total else "degraded"
            detail = "; ".join(problems + missing)
            return Health(state, detail, latency, restartable=bool(self._dead()))
        if missing:
            return Health("degraded", missing[0], latency)
        loaded = ", ".join(sorted(self._processes)) or "none"
        return Health("up", f"models loaded: {loaded}", latency)

    # -- generation ---------------------------------------------------------------------------

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """Chunks from the model's llama.cpp server (loading the model first if needed)."""
        request = await self._prepared(request)
        process, upstream = await self._serving(request.model)
        chunks = upstream_chat.stream(
            upstream, request, ALIAS, prefix="/v1", extra_keys=LLAMA_PARAMETERS
        )
        async with self._watching(process), contextlib.aclosing(chunks):
            async for chunk in chunks:
                yield chunk  # closing this generator closes the HTTP stream at once

    async def generate(self, request: GenerationRequest) -> Result:
        """A whole answer from the model's llama.cpp server."""
        request = await self._prepared(request)
        process, upstream = await self._serving(request.model)
        async with self._watching(process):
            return await upstream_chat.generate(
                upstream, request, ALIAS, prefix="/v1", extra_keys=LLAMA_PARAMETERS
            )

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        """Embeddings from a model loaded in embedding mode."""
        file = await self._file(model)
        if not self.is_embedding(file):
            raise InvalidRequest(
                f"model {model!r} of {self.instance_name!r} is not loaded as an embedding "
                "model; list it in the instance's embedding_models setting",
                binding=self.instance_name,
                param="model",
            )
        process, upstream = await self._serving(model)
        async with self._watching(process):
            return await upstream_chat.embed(upstream, texts, ALIAS, prefix="/v1")

    async def tokenize(self, text: str, model: str) -> list[int]:
        """Token ids of `text` under the model's own tokenizer (no BOS added)."""
        process, upstream = await self._serving(model)
        async with self._watching(process):
            answer = await upstream.post_json("/tokenize", {"content": text, "add_special": False})
        return [int(token) for token in answer.get("tokens", [])]

    async def special_tokens(self, model: str) -> tuple[int | None, int | None]:
        """BOS and EOS ids from the GGUF header (`tokenizer.ggml.bos/eos_token_id`)."""
        file = await self._file(model)
        header = file.header
        if header is None:
            return None, None
        bos, eos = (
            header.get("tokenizer.ggml.bos_token_id"),
            header.get("tokenizer.ggml.eos_token_id"),
        )
        return (bos if isinstance(bos, int) else None), (eos if isinstance(eos, int) else None)

    async def detokenize(self, tokens: list[int], model: str) -> str:
        """Text of token ids under the model's tokenizer; ids outside the vocabulary are a 400."""
        file = await self._file(model)
        vocab = file.header.vocab_size if file.header else None
        if vocab is not None and any(not 0 <= token < vocab for token in tokens):
            raise InvalidRequest(
                f"token ids of {model!r} are 0-{vocab - 1}", binding=self.instance_name
            )
        process, upstream = await self._serving(model)
        async with self._watching(process):
            answer = await upstream.post_json("/detokenize", {"tokens": tokens})
        return str(answer.get("content", ""))

    @contextlib.asynccontextmanager
    async def _watching(self, process: ModelProcess) -> AsyncIterator[None]:
        """Turn a failure seen through a dead process into a 503 naming the model."""
        try:
            yield
        except BackendUnavailable as exc:
            if process.alive and process.process is not None:
                # the connection broke: give the OS a moment to report the exit
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(process.process.wait()), 1.0)
            if process.alive:
                raise
            if not process.stopping:
                self.log.error("%s died (status %s)", process.what(), process.returncode)
            raise unavailable(process) from exc
