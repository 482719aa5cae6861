"""The `ollama` binding: the models of an Ollama server, through the official ollama client.

Models are listed from `/api/tags` (details: family, parameter size, quantization, size) with
`/api/ps` marking the loaded ones and `/api/show` (cached per digest) giving capabilities and
context length. `load` is a generate request without a prompt, `unload` one with keep_alive 0.
A missing model is pulled first when `auto_pull` is on, its progress streamed as info chunks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import aclosing, contextmanager
from typing import TYPE_CHECKING, Any, cast

from lollms_server.sdk import (
    NO_CONCURRENCY_CAP,
    Binding,
    BindingContext,
    Chunk,
    GenerationRequest,
    Health,
    LollmsError,
    ModelInfo,
    ModelNotFound,
    Output,
    Result,
    mask_secrets,
    mask_url,
    outgoing_headers,
)

from . import convert
from .settings import OllamaConfig, OllamaSettings

if TYPE_CHECKING:  # the ollama client (with httpx, pydantic) loads on first use, not at start-up
    import httpx
    import ollama


def client_errors() -> tuple[type[BaseException], ...]:
    """What a client error can be: the ollama client's, httpx's, or a reply that is not Ollama's."""
    import httpx
    import ollama

    return (ollama.ResponseError, httpx.HTTPError, ConnectionError, ValueError)


async def add_trace_headers(request: httpx.Request) -> None:
    """The request id and W3C trace context on every call to Ollama (httpx request hook)."""
    request.headers.update(outgoing_headers())


#: At most this many /api/show requests at once when a listing meets new models.
SHOW_CONCURRENCY = 8


class OllamaBinding(Binding):
    """Text, vision and embeddings from the models of an Ollama server."""

    name = "ollama"
    title = "Ollama"
    description = "Models of an Ollama server (chat, vision, embeddings, load/unload, pull)."
    capabilities = frozenset({"ttt", "stream", "vision", "embeddings", "load_unload"})
    ConfigSchema = OllamaSettings
    default_concurrency = NO_CONCURRENCY_CAP  # the Ollama server queues what it cannot run
    loads_models = False  # `serve --workers N` may run it in every worker
    secret_settings = frozenset({"api_key", "headers"})
    settings: OllamaConfig

    def __init__(
        self,
        instance_name: str,
        config: Mapping[str, Any],
        *,
        context: BindingContext | None = None,
    ) -> None:
        super().__init__(instance_name, config, context=context)
        self.url = convert.normalize_host(self.settings.host)
        self.keep_alive = self.settings.keep_alive
        self.allowed = list(self.settings.models)
        self.auto_pull = self.settings.auto_pull
        self._client: ollama.AsyncClient | None = None
        self._http: httpx.AsyncClient | None = None
        self._shown: dict[str, Any] = {}  # /api/show answers by model digest
        self._show_slots = asyncio.Semaphore(SHOW_CONCURRENCY)

    @property
    def client(self) -> ollama.AsyncClient:
        """The ollama client (created on first use)."""
        if self._client is None:
            import httpx
            import ollama

            timeout = httpx.Timeout(
                self.settings.request_timeout_s, connect=self.settings.connect_timeout_s
            )
            headers = dict(self.settings.headers)
            self._client = ollama.AsyncClient(
                host=self.url,
                timeout=timeout,
                headers=headers,
                event_hooks={"request": [add_trace_headers]},
            )
        return self._client

    async def startup(self) -> None:
        """Create the clients; no request is made (health says whether Ollama answers)."""
        import httpx

        _ = self.client
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=dict(self.settings.headers),
            timeout=self.settings.health_timeout_s,
        )

    async def shutdown(self) -> None:
        """Close the clients."""
        if self._client is not None:
            await self._client.close()  # type: ignore[no-untyped-call]
            self._client = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def public_settings(self) -> dict[str, Any]:
        """Settings with header values and URL credentials masked."""
        shown = mask_secrets(self.config, self.secret_settings)
        shown["headers"] = {name: "***" for name in self.settings.headers}
        shown["host"] = mask_url(self.url)
        return shown

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Re-raise client failures as our errors naming the instance."""
        try:
            yield
        except LollmsError:
            raise
        except client_errors() as exc:
            raise convert.backend_error(exc, self.instance_name, self.url) from exc

    async def health(self) -> Health:
        """`up` when GET /api/version answers within `health_timeout_s`; never raises."""
        started = time.monotonic()
        if self._http is None:
            await self.startup()
        assert self._http is not None
        failures: tuple[type[BaseException], ...] = (*client_errors(), AttributeError)
        try:
            response = await self._http.get("/api/version")
            response.raise_for_status()
            version = response.json().get("version", "?")
        except failures as exc:
            elapsed = (time.monotonic() - started) * 1000
            error = convert.backend_error(exc, self.instance_name, self.url)
            return Health("down", error.message, elapsed)
        return Health("up", f"ollama {version} at {self.url}", (time.monotonic() - started) * 1000)

    def check_allowed(self, model: str) -> None:
        """ModelNotFound for a model outside the `models` allow-list."""
        if self.allowed and not any(convert.same_model(model, a) for a in self.allowed):
            raise ModelNotFound(
                f"model {model!r} is not offered by ollama instance {self.instance_name!r} "
                f"(its models setting allows: {', '.join(self.allowed)})",
                binding=self.instance_name,
                param="model",
            )

    async def list_models(self) -> list[ModelInfo]:
        """Models of /api/tags (allow-list applied), loaded ones from /api/ps."""
        with self.errors():
            tags, running = await asyncio.gather(self.client.list(), self.client.ps())
        loaded = {m.model: m for m in running.models if m.model}
        offered = [m for m in tags.models if m.model and self._offered(m.model)]
        shown = await asyncio.gather(*(self._show(m) for m in offered))
        return [
            self._model_info(m, loaded.get(m.model or ""), s)
            for m, s in zip(offered, shown, strict=True)
        ]

    def _offered(self, model: str) -> bool:
        return not self.allowed or any(convert.same_model(model, a) for a in self.allowed)

    async def _show(self, model: Any) -> Any:
        """/api/show of a model, cached by digest; None when it fails."""
        key = model.digest or model.model
        if key not in self._shown:
            try:
                async with self._show_slots:
                    self._shown[key] = await self.client.show(model.model)
            except client_errors():
                return None
        return self._shown[key]

    def _model_info(self, model: Any, running: Any, shown: Any) -> ModelInfo:
        details = model.details
        family = getattr(details, "family", None) or ""
        parameter_size = getattr(details, "parameter_size", None) or ""
        quantization = getattr(details, "quantization_level", None) or ""
        extra: dict[str, Any] = {
            "format": getattr(details, "format", None) or "",
            "family": family,
            "families": list(getattr(details, "families", None) or []),
            "parameter_size": parameter_size,
            "quantization_level": quantization,
            "parent_model": getattr(details, "parent_model", None) or "",
            "digest": model.digest or "",
            "modified_at": convert.timestamp(model.modified_at),
        }
        if running is not None:
            extra["expires_at"] = convert.timestamp(running.expires_at)
            extra["size_vram"] = int(running.size_vram or 0)
        context = running.context_length if running is not None else None
        return ModelInfo(
            name=model.model,
            family=family or None,
            size_bytes=int(model.size) if model.size is not None else None,
            parameters=convert.parse_parameter_size(parameter_size),
            quantization=quantization or None,
            context_length=context or (convert.shown_context_length(shown) if shown else None),
            capabilities=convert.shown_capabilities(shown) if shown else frozenset(),
            memory_bytes=int(running.size) if running is not None and running.size else None,
            loaded=running is not None,
            details=extra,
        )

    async def load(self, model: str) -> int | None:
        """Load a model (a generate request without a prompt); bytes used from /api/ps."""
        self.check_allowed(model)
        with self.errors():
            await self.client.generate(model=model, keep_alive=self.keep_alive)
            running = await self.client.ps()
        for item in running.models:
            if item.model and convert.same_model(item.model, model) and item.size:
                return int(item.size)
        return None

    async def unload(self, model: str) -> None:
        """Unload a model (a generate request with keep_alive 0)."""
        self.check_allowed(model)
        with self.errors():
            await self.client.generate(model=model, keep_alive=0)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Chat (or raw generate) chunks; a missing model is pulled first with `auto_pull`."""
        self.check_allowed(request.model)
        started = False
        try:
            async with aclosing(self._stream_once(request)) as chunks:
                async for chunk in chunks:
                    started = True
                    yield chunk
        except ModelNotFound:
            if started or not self.auto_pull:
                raise
            async with aclosing(self.pull(request.model)) as progress:
                async for info in progress:
                    yield info
            async with aclosing(self._stream_once(request)) as chunks:
                async for chunk in chunks:
                    yield chunk

    async def _stream_once(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        with self.errors():
            parts = await self._call(request, stream=True)
            async with aclosing(parts) as iterator:
                async for part in iterator:
                    yield self._chunk(request, part)

    def _chunk(self, request: GenerationRequest, part: Any) -> Chunk:
        if request.raw_prompt:
            content, thoughts = part.response or "", part.thinking or ""
        else:
            content, thoughts = part.message.content or "", part.message.thinking or ""
        if not part.done:
            return Chunk.text(content, thoughts)
        return Chunk(
            content=content,
            thoughts=thoughts,
            usage=convert.usage(part),
            finish_reason=convert.finish_reason(part),
        )

    async def generate(self, request: GenerationRequest) -> Result:
        """One non-streamed chat (or raw generate) request."""
        self.check_allowed(request.model)
        if self.auto_pull:
            return await super().generate(request)  # through stream(), which can pull
        with self.errors():
            part = await self._call(request, stream=False)
        chunk = self._chunk(request, part)
        text = Output("text", text=chunk.content, thoughts=chunk.thoughts or None)
        return Result((text,), chunk.usage, chunk.finish_reason or "stop")

    async def _call(self, request: GenerationRequest, *, stream: bool) -> Any:
        params = request.parameters
        common: dict[str, Any] = {
            "model": request.model,
            "options": convert.options(params) or None,
            "format": convert.response_format(params),
            "keep_alive": params.get("keep_alive", self.keep_alive),
            "think": params.get("think"),
            "stream": stream,
        }
        if request.raw_prompt:
            images = [i.data for m in request.messages for i in m.images]
            return await self.client.generate(
                prompt=request.prompt, raw=True, images=images or None, **common
            )
        return await self.client.chat(messages=convert.messages(request.messages), **common)

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        """Vectors from /api/embed."""
        self.check_allowed(model)
        with self.errors():
            answer = await self.client.embed(model=model, input=texts, keep_alive=self.keep_alive)
        return [[float(x) for x in vector] for vector in answer.embeddings]

    async def pull(self, model: str) -> AsyncGenerator[Chunk, None]:
        """Pull a model onto the Ollama server, yielding its progress as info chunks."""
        self.check_allowed(model)
        with self.errors():
            progress = await self.client.pull(model, stream=True)
            async with aclosing(cast(AsyncGenerator[Any, None], progress)) as updates:
                async for update in updates:
                    yield Chunk(
                        type="info",
                        content=f"pull {model}: {update.status or ''}".strip(),
                        metadata={
                            "status": update.status,
                            "completed": update.completed,
                            "total": update.total,
                            "digest": update.digest,
                        },
                    )
