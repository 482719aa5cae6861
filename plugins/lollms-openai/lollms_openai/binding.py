"""The `openai` binding: any OpenAI-compatible server (OpenAI, LM Studio, vLLM, llama.cpp...).

Text, streaming (usage passed through), vision parts and tool calls go to `/chat/completions`
(raw prompts to `/completions`), embeddings to `/embeddings`, images to `/images/*`, speech and
transcription to `/audio/*`. Model names are the server's model ids; unknown ones are refused
with a 404 before any generation (from a cached `/models` listing, or the `models` allow-list).
The API key is only ever sent as a bearer token (see `lollms_server.upstream`).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from lollms_server.sdk import (
    NO_CONCURRENCY_CAP,
    BackendUnavailable,
    Binding,
    BindingContext,
    Chunk,
    GenerationRequest,
    Health,
    LollmsError,
    ModelInfo,
    ModelNotFound,
    NotSupported,
    Output,
    Result,
    RetryPolicy,
    Upstream,
    monotonic_ms,
    upstream_chat,
)

from . import media
from .settings import ALL_CAPABILITIES, OpenAIConfig, OpenAISettings

MEDIA_TYPES = ("tti", "i2i", "tts", "stt")


class OpenAIBinding(Binding):
    """A client of one OpenAI-compatible server."""

    name = "openai"
    title = "OpenAI-compatible server"
    description = "OpenAI, LM Studio, vLLM, llama.cpp server, Groq, another lollms-server..."
    capabilities = frozenset(ALL_CAPABILITIES)
    ConfigSchema = OpenAISettings
    settings: OpenAIConfig
    default_concurrency = NO_CONCURRENCY_CAP  # the remote server decides
    loads_models = False  # `serve --workers N` may run it in every worker

    def __init__(
        self,
        instance_name: str,
        config: Mapping[str, Any],
        *,
        context: BindingContext | None = None,
    ) -> None:
        super().__init__(instance_name, config, context=context)
        narrowed = self.settings.capabilities
        if narrowed is not None:
            # the instance claims only what its server does; the core reads it per instance
            self.capabilities = frozenset(narrowed) & type(self).capabilities  # type: ignore[misc]
        self._upstream: Upstream | None = None
        self._model_ids: tuple[float, frozenset[str]] | None = None

    @property
    def upstream(self) -> Upstream:
        """The HTTP client of the server (created on first use)."""
        if self._upstream is None:
            settings = self.settings
            self._upstream = Upstream(
                self.instance_name,
                settings.base_url,
                api_key=self._api_key(),
                connect_timeout_s=settings.connect_timeout_s,
                read_timeout_s=settings.read_timeout_s,
                retry=RetryPolicy(
                    attempts=1 + settings.retries, max_retry_after_s=settings.max_retry_after_s
                ),
                label=f"the server of {self.instance_name!r}",
            )
        return self._upstream

    def _api_key(self) -> str | None:
        key = self.settings.api_key
        variable = self.settings.api_key_env
        if variable:
            key = os.environ.get(variable)
            if not key:
                raise BackendUnavailable(
                    f"{self.instance_name!r} reads its API key from the environment variable "
                    f"{variable}, which is not set",
                    binding=self.instance_name,
                )
        return key

    async def startup(self) -> None:
        """Create the client (no network call: a server that is down must not block start-up)."""
        self.upstream  # noqa: B018 - builds the client, reading api_key_env

    async def shutdown(self) -> None:
        """Close the connection pool."""
        if self._upstream is not None:
            await self._upstream.close()

    async def health(self) -> Health:
        """`up` when GET /models answers within `health_timeout_s`; never raises."""
        started = monotonic_ms()
        timeout = self.settings.health_timeout_s
        try:
            await self.upstream.get_json("/models", timeout_s=timeout, retry=False)
        except NotSupported:
            return Health("up", "the server has no /models listing", monotonic_ms() - started)
        except LollmsError as exc:
            return Health("down", exc.message, monotonic_ms() - started)
        return Health("up", "", monotonic_ms() - started)

    async def list_models(self) -> list[ModelInfo]:
        """The server's models (GET /models), limited to the `models` allow-list if set."""
        try:
            return await self._fetch_models()
        except NotSupported as exc:
            allowed = self.settings.models
            if allowed:
                return [ModelInfo(name=name) for name in allowed]
            raise BackendUnavailable(
                f"the server of {self.instance_name!r} has no /models listing; "
                "set the instance's `models` list",
                binding=self.instance_name,
            ) from exc
        except LollmsError as exc:
            if isinstance(exc, BackendUnavailable):
                raise
            raise BackendUnavailable(exc.message, binding=self.instance_name) from exc

    async def _fetch_models(self) -> list[ModelInfo]:
        """GET /models, raising the upstream's own error (401 stays a 502, ...)."""
        answer = await self.upstream.get_json("/models")
        items = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(items, list):
            raise BackendUnavailable(
                f"the server of {self.instance_name!r} answered /models without a data list",
                binding=self.instance_name,
            )
        allowed = set(self.settings.models)
        infos = []
        for item in items:
            model_id = item.get("id") if isinstance(item, dict) else None
            if not isinstance(model_id, str) or (allowed and model_id not in allowed):
                continue
            details = {k: item[k] for k in ("owned_by", "created") if item.get(k) is not None}
            context = item.get("context_length") or item.get("max_model_len")
            infos.append(
                ModelInfo(
                    name=model_id,
                    family=item.get("owned_by") if isinstance(item.get("owned_by"), str) else None,
                    context_length=context if isinstance(context, int) else None,
                    details=details,
                )
            )
        self._model_ids = (time.monotonic(), frozenset(info.name for info in infos))
        return infos

    async def check_model(self, model: str) -> None:
        """ModelNotFound unless the server (or the allow-list) has `model`."""
        allowed = self.settings.models
        if allowed and model not in allowed:
            raise self._not_found(model, sorted(allowed))
        if not self.settings.check_models:
            return
        cache_s = self.settings.models_cache_s
        if self._model_ids is None or time.monotonic() - self._model_ids[0] > cache_s:
            try:
                await self._fetch_models()
            except NotSupported:
                return  # a server without /models: let it judge the name itself
        assert self._model_ids is not None
        if model not in self._model_ids[1]:
            raise self._not_found(model, sorted(self._model_ids[1]))

    def _not_found(self, model: str, known: list[str]) -> ModelNotFound:
        shown = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
        return ModelNotFound(
            f"the server of {self.instance_name!r} has no model {model!r}; models: "
            f"{shown or 'none'}",
            binding=self.instance_name,
            param="model",
        )

    async def generate(self, request: GenerationRequest) -> Result:
        """A whole result: chat/completion, images, speech or a transcript."""
        await self.check_model(request.model)
        kind = request.generation_type
        if kind == "ttt":
            return await upstream_chat.generate(
                self.upstream,
                request,
                request.model,
                extra_keys=self.settings.extra_parameters,
                renames=self.settings.rename_parameters,
            )
        if kind == "tti":
            return Result(tuple(await media.generate_images(self.upstream, request)))
        if kind == "i2i":
            return Result(tuple(await media.edit_images(self.upstream, request)))
        if kind == "tts":
            voice = self.settings.default_voice
            return Result((await media.speak(self.upstream, request, voice),))
        if kind == "stt":
            return Result((await media.transcribe(self.upstream, request),))
        raise NotSupported(f"binding type openai cannot do {kind!r}", binding=self.instance_name)

    def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Text as it comes; media types as one chunk per output once finished."""
        if request.generation_type != "ttt":
            return self._outputs_as_chunks(request)
        # the core's generator itself, not relayed: closing it closes the HTTP stream at once
        return upstream_chat.stream(
            self.upstream,
            request,
            request.model,
            extra_keys=self.settings.extra_parameters,
            stream_usage=self.settings.stream_usage,
            renames=self.settings.rename_parameters,
            check=functools.partial(self.check_model, request.model),
        )

    async def _outputs_as_chunks(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]:
        """A media generation's outputs, one chunk each, once it finished."""
        result = await self.generate(request)
        for output in result.outputs:
            media_output: Output | None = None if output.type == "text" else output
            text = output.text if output.type == "text" else ""
            yield Chunk(content=text, output=media_output, finish_reason=result.finish_reason)

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        """Embedding vectors from POST /embeddings."""
        await self.check_model(model)
        return await upstream_chat.embed(self.upstream, texts, model)
