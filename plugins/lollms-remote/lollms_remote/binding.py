"""The `lollms` binding: another lollms-server (a node) as the backend of this one (a gateway).

Every generation type goes to the node's `POST /api/v1/generate` (whole, or streamed as SSE);
models come from its `list_models`, load/unload from its admin routes, tokens from its
tokenizer routes and embeddings from its `/v1/embeddings`. The node key is only ever sent to
the node, as a bearer token (see `lollms_server.upstream`). Each answer's load headers (queue
depth per model, free memory) are recorded (`load.NodeLoad`), so that routes choose on fresh
figures (less our own generations in flight there, which the route counts itself); the
request id and the W3C trace context travel to the node (as on every upstream call, see
`lollms_server.tracing.outgoing_headers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from contextvars import ContextVar
from typing import Any

import aiohttp

from lollms_server.sdk import (
    GENERATION_TYPES,
    NO_CONCURRENCY_CAP,
    BackendError,
    BackendUnavailable,
    Binding,
    BindingContext,
    Chunk,
    GenerationRequest,
    Health,
    LoadRefused,
    LollmsError,
    ModelInfo,
    ModelNotFound,
    Result,
    RetryPolicy,
    Room,
    Upstream,
    monotonic_ms,
)

from . import wire
from .load import NodeLoad, describe
from .settings import RemoteConfig, RemoteSettings

#: The lane of the whole generation whose answer is being received (the node has let it go).
_ANSWERING: ContextVar[str | None] = ContextVar("lollms_remote_answering", default=None)


class LollmsRemoteBinding(Binding):
    """A client of one lollms-server node."""

    name = "lollms"
    title = "Another lollms-server (fleet node)"
    description = "A lollms-server on another machine: all its models and generation types."
    capabilities = frozenset(GENERATION_TYPES) | {"stream", "load_unload", "vision", "embeddings"}
    ConfigSchema = RemoteSettings
    default_concurrency = NO_CONCURRENCY_CAP  # the node's own scheduler decides
    loads_models = False  # `serve --workers N` may run it in every worker
    books_memory = False  # the node keeps the books of its own memory
    settings: RemoteConfig

    def __init__(
        self,
        instance_name: str,
        config: Mapping[str, Any],
        *,
        context: BindingContext | None = None,
    ) -> None:
        super().__init__(instance_name, config, context=context)
        self._upstream: Upstream | None = None
        self._models: tuple[float, list[ModelInfo]] | None = None
        self.load_report = NodeLoad()  # the node's last reported figures
        self.status: dict[str, Any] = {}  # the node's last GET /api/v1/status answer
        self._refresh: asyncio.Task[Any] | None = None  # a status call for stale load figures
        self._refreshed_at = 0.0  # when the last one started (one per load_fresh_s at most)
        self._listing_failed: LollmsError | None = None  # the last listing's failure, if it failed
        self._relist: asyncio.Task[None] | None = None  # the listing asked again meanwhile

    @property
    def upstream(self) -> Upstream:
        """The HTTP client of the node (created on first use)."""
        if self._upstream is None:
            settings = self.settings
            self._upstream = Upstream(
                self.instance_name,
                settings.base_url,
                api_key=settings.node_key(self.instance_name),
                connect_timeout_s=settings.connect_timeout_s,
                read_timeout_s=settings.read_timeout_s,
                retry=RetryPolicy(
                    attempts=1 + settings.retries, max_retry_after_s=settings.max_retry_after_s
                ),
                label=f"node {self.instance_name!r}",
                on_response=self._record_load,
            )
        return self._upstream

    def _record_load(self, response: aiohttp.ClientResponse) -> None:
        """Keep the load figures the node put on an answer, less our calls it counted: all in
        flight but a whole generation being answered (its turn on the node is over)."""
        self.load_report.record_headers(response.headers, answered=_ANSWERING.get())

    def reported_load(self, model: str) -> float | None:
        """Generations of `model` the node last said it runs or queues beyond ours, or None;
        a report older than `load_fresh_s` counts as none and the node is asked again."""
        fresh_s = self.settings.load_fresh_s
        now = time.monotonic()
        idle = self._refresh is None or self._refresh.done()
        if idle and self.load_report.stale(fresh_s) and now - self._refreshed_at > fresh_s:
            self._refreshed_at = now
            self._refresh = asyncio.get_running_loop().create_task(self._refresh_load())
        return self.load_report.depth(self._lane(model) or model, fresh_s)

    async def _refresh_load(self) -> dict[str, Any]:
        """Fresh load figures from the node's status (its answer's headers, and its body);
        the status, or {} when the node gave none."""
        asked_at, timeout = time.monotonic(), self.settings.health_timeout_s
        with contextlib.suppress(LollmsError):  # a node that does not answer: the monitor's job
            status = await self.upstream.get_json("/api/v1/status", timeout_s=timeout, retry=False)
            if isinstance(status, dict):
                self.load_report.record_status(status, asked_at)
                return status
        return {}

    def reported_room(self, model: str) -> Room | None:
        """The node's free memory less the model's size (none if loaded there), or None."""
        lane = self._lane(model)
        need = None
        for info in self._models[1] if self._models is not None else ():
            if info.name == lane:
                need = info.memory_bytes or info.size_bytes
        return self.load_report.room(lane, need)

    def _lane(self, model: str) -> str | None:
        """The node's `instance/model` of `model`: itself when the cached listing names it so,
        else the first instance listing it as a bare name (which may have a slash of its own:
        `org/model`), else `model` when it names an instance, else None."""
        listed = [info.name for info in self._models[1]] if self._models is not None else []
        if model in listed:
            return model
        for name in listed:
            if name.partition("/")[2] == model:
                return name
        return model if wire.split_model(model)[0] is not None else None

    def node_status(self) -> dict[str, Any]:
        """The dashboard's view of the node: its last load figures, its address (no secrets)."""
        status, report = self.status, self.load_report
        return {
            "url": self.upstream.url_for_logs,
            "queue_depth": report.queue_depth,
            "queue": dict(report.lanes or {}),
            "loaded": sorted(report.loaded),
            "devices": [d for d in status.get("devices") or [] if isinstance(d, dict)],
            "free_memory": report.free_memory,
        }

    async def startup(self) -> None:
        """Create the client (no network call: a node that is down must not block start-up)."""
        self.upstream  # noqa: B018 - builds the client, reading api_key_env

    async def shutdown(self) -> None:
        """Close the connection pool."""
        for task in (self._refresh, self._relist):
            if task is not None:
                task.cancel()
        if self._upstream is not None:
            await self._upstream.close()

    async def health(self) -> Health:
        """The node's readiness (`/api/v1/ready`), with its load from `/api/v1/status`; a node
        that drains (its status says so) is down and `draining`: a planned stop, no failure."""
        started = monotonic_ms()
        timeout = self.settings.health_timeout_s
        try:
            await self.upstream.get_json("/api/v1/ready", timeout_s=timeout, retry=False)
        except LollmsError as exc:
            ready_503 = exc.details.get("upstream_status") == 503
            drains = ready_503 and (await self._refresh_load()).get("draining") is True
            return Health("down", exc.message, monotonic_ms() - started, draining=drains)
        detail = ""
        asked_at = time.monotonic()
        try:
            status = await self.upstream.get_json("/api/v1/status", timeout_s=timeout, retry=False)
        except LollmsError as exc:
            detail = f"no load figures: {exc.message}"
        else:
            if isinstance(status, dict):
                self.status = status
                self.load_report.record_status(status, asked_at)
                detail = describe(status)
        if self._models is None or asked_at - self._models[0] > self.settings.models_cache_s:
            with contextlib.suppress(LollmsError):  # the sizes `most-room` weighs
                await self.list_models()
        return Health("up", detail, monotonic_ms() - started)

    async def list_models(self) -> list[ModelInfo]:
        """The node's models, named `<node instance>/<model>`, with their metadata."""
        path, timeout = "/api/v1/list_models?format=lollms-server", self.settings.health_timeout_s
        try:  # bounded: a frozen node must not hold a fleet route's choice for read_timeout_s
            answer = await self.upstream.get_json(path, timeout_s=timeout)
        except LollmsError as exc:
            failed: LollmsError = BackendUnavailable(exc.message, binding=self.instance_name)
            self._listing_failed = failed
            raise failed from exc
        listing = answer.get("models") if isinstance(answer, dict) else None
        if not isinstance(listing, dict):
            self._listing_failed = BackendError(
                f"node {self.instance_name!r} answered list_models without a models table",
                binding=self.instance_name,
            )
            raise self._listing_failed
        self._listing_failed = None
        infos = [
            info
            for items in listing.values()
            for item in (items if isinstance(items, list) else [])
            if isinstance(item, dict) and (info := wire.model_info(item)) is not None
        ]
        self._models = (time.monotonic(), infos)
        return infos

    async def has_model(self, model: str) -> bool:
        """True when the node lists `model` (as `instance/model`, or a bare model name). Once
        a listing failed, its failure is raised at once while the node is asked again in the
        background (a frozen node held each request health_timeout_s), until one answers."""
        cache_s = self.settings.models_cache_s
        if self._models is None or time.monotonic() - self._models[0] > cache_s:
            if self._listing_failed is not None:
                if self._relist is None or self._relist.done():
                    self._relist = asyncio.get_running_loop().create_task(self._list_again())
                raise self._listing_failed.with_traceback(None)
            await self.list_models()
        assert self._models is not None
        return any(model in (info.name, info.name.partition("/")[2]) for info in self._models[1])

    async def _list_again(self) -> None:
        """A listing whose failure is not waited on: it clears the failure once it answers."""
        with contextlib.suppress(LollmsError):
            await self.list_models()

    async def _node_ref(self, model: str) -> dict[str, str]:
        """The node's binding and model names of `model` (a bare name, with a slash or not:
        the first instance of the node listing it; one that none lists is a ModelNotFound)."""
        lane = self._lane(model)
        if lane != model:  # a bare name (the listing's, kept models_cache_s)
            await self.has_model(model)
            lane = self._lane(model)
        if lane is None:
            raise ModelNotFound(
                f"node {self.instance_name!r} has no model {model!r}",
                binding=self.instance_name,
                param="model",
            )
        instance, name = wire.split_model(lane)
        return {"binding_name": instance or "", "model_name": name}

    async def load(self, model: str) -> int | None:
        """Load the model on the node (the node key must be an admin key there; with another
        key LoadRefused: the node loads the model on demand for each generation instead)."""
        names = await self._node_ref(model)
        try:
            answer = await self.upstream.post_json("/api/v1/load_model", names)
        except BackendError as exc:
            if exc.details.get("upstream_status") not in (401, 403):
                raise
            message = f"{exc.message}: loading a model ahead needs an admin key of the node"
            raise LoadRefused(message, binding=self.instance_name) from exc
        self.load_report.mark_loaded(wire.lane_of(names))
        memory = answer.get("memory_bytes") if isinstance(answer, dict) else None
        return memory if isinstance(memory, int) else None

    async def unload(self, model: str) -> None:
        """Unload the model on the node."""
        names = await self._node_ref(model)
        await self.upstream.post_json("/api/v1/unload_model", names)
        self.load_report.mark_unloaded(wire.lane_of(names))

    async def generate(self, request: GenerationRequest) -> Result:
        """The node's whole answer (media are the node's own bytes)."""
        names = await self._node_ref(request.model)
        body = wire.generate_body(request, stream=False, **names)
        lane = wire.lane_of(names)
        answering = _ANSWERING.set(lane)
        try:
            with self.load_report.calling(lane):
                raw, _ = await self.upstream.post_for_bytes("/api/v1/generate", body)
        finally:
            _ANSWERING.reset(answering)
        self.load_report.mark_loaded(lane)
        answer = await wire.decode(raw)
        if not isinstance(answer, dict) or not wire.is_output_list(answer.get("output")):
            raise BackendError(  # not an empty answer: what the node made would be lost
                f"node {self.instance_name!r} answered generate without an object holding an"
                " `output` list of items",
                binding=self.instance_name,
            )
        return await asyncio.to_thread(wire.result_of, answer) if len(raw) > wire.BIG_ANSWER else (
            wire.result_of(answer)
        )  # fmt: skip

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """The node's SSE events as chunks; closing this generator closes the node's stream."""
        names = await self._node_ref(request.model)
        events = self.upstream.stream_events(
            "/api/v1/generate", wire.generate_body(request, stream=True, **names)
        )
        streamed_text = False
        with self.load_report.calling(wire.lane_of(names)):
            async with aclosing(events):
                async for event in events:
                    kind = event.get("type")
                    found = event.get("metadata")
                    metadata: dict[str, Any] = found if isinstance(found, dict) else {}
                    if kind == "chunk":
                        content, thoughts = event.get("content"), event.get("thoughts")
                        streamed_text = True
                        yield Chunk(
                            content=content if isinstance(content, str) else "",
                            thoughts=thoughts if isinstance(thoughts, str) else "",
                        )
                    elif kind == "info" and event.get("content") != "started":
                        yield Chunk(
                            type="info", content=str(event.get("content")), metadata=metadata
                        )
                    elif kind == "error":
                        raise self._event_error(metadata.get("error"), event.get("content"))
                    elif kind == "final":
                        self.load_report.mark_loaded(wire.lane_of(names))
                        for chunk in wire.final_chunks(metadata, streamed_text):
                            yield chunk
                        return
        raise BackendUnavailable(
            f"node {self.instance_name!r} ended its stream without a final event",
            binding=self.instance_name,
        )

    def _event_error(self, error: Any, content: Any) -> LollmsError:
        """Our error for the node's `error` event (same type and status, naming the node)."""
        error = error if isinstance(error, dict) else {}
        message = str(error.get("message") or content or "unknown error")
        cls = wire.error_class(str(error.get("type") or ""))
        return cls(
            f"node {self.instance_name!r}: {self.upstream.scrub(message)}",
            binding=self.instance_name,
            details={"node_error": error.get("type")},
        )

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        """Embedding vectors from the node's `/v1/embeddings`."""
        answer = await self.upstream.post_json("/v1/embeddings", {"model": model, "input": texts})
        items = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(items, list):
            raise BackendError(
                f"node {self.instance_name!r} answered embeddings without a data list",
                binding=self.instance_name,
            )
        ordered = sorted(items, key=lambda item: item.get("index", 0))
        return [[float(v) for v in item["embedding"]] for item in ordered]

    async def tokenize(self, text: str, model: str) -> list[int]:
        """Token ids from the node's tokenizer."""
        body = {"text": text, **await self._node_ref(model)}
        answer = await self.upstream.post_json("/api/v1/tokenize", body)
        return [int(t) for t in answer.get("tokens", [])]

    async def detokenize(self, tokens: list[int], model: str) -> str:
        """Text of token ids from the node's tokenizer."""
        body = {"tokens": tokens, **await self._node_ref(model)}
        answer = await self.upstream.post_json("/api/v1/detokenize", body)
        return str(answer.get("text", ""))

    async def special_tokens(self, model: str) -> tuple[int | None, int | None]:
        """The node's BOS and EOS ids: what its tokenizer adds to an empty text when asked."""
        ref = await self._node_ref(model)

        async def tokens_of(**flags: bool) -> list[int]:
            answer = await self.upstream.post_json("/api/v1/tokenize", {"text": "", **flags, **ref})
            return [int(t) for t in answer.get("tokens", [])]

        plain, with_bos, with_eos = (
            await tokens_of(),
            await tokens_of(add_bos=True),
            await tokens_of(add_eos=True),
        )
        bos = with_bos[0] if with_bos else None
        eos = with_eos[-1] if len(with_eos) > len(plain) else None
        return bos, eos

    async def count_tokens(self, text: str, model: str) -> int:
        """How many tokens the node counts in `text`."""
        body = {"text": text, **await self._node_ref(model)}
        answer = await self.upstream.post_json("/api/v1/count_tokens", body)
        return int(answer.get("count", 0))
