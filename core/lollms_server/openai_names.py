"""Model names that clients hard-code, served by the default model of the route's type.

`lollms-client` asks `/v1/embeddings` for `text-embedding-3-small`, `/v1/audio/transcriptions`
for `whisper-1` and Ollama's `/api/embeddings` for `bge-m3` whatever the server has; other
OpenAI clients do the same for speech, images and chat (LangChain, `llm`).
When no instance of this server lists a model of that name, the request goes to the default
instance and model of the generation type, and the answer's `model` field names what served it.
"""

from __future__ import annotations

import asyncio

from .bindings import Binding
from .errors import LollmsError
from .listing import list_models_of, visible_bindings
from .registry import Registry, Target

#: Ollama's default tag, which the Ollama face adds to untagged names.
LATEST = ":latest"
OPENAI_MODEL_NAMES = frozenset(
    {
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
        "whisper-1",
        "gpt-4o-transcribe",
        "gpt-4o-mini-transcribe",
        "tts-1",
        "tts-1-hd",
        "gpt-4o-mini-tts",
        "dall-e-2",
        "dall-e-3",
        "gpt-image-1",
        "bge-m3",  # lollms-client's ollama binding embeds with it unless told otherwise
        "gpt-3.5-turbo",  # LangChain's ChatOpenAI when no model is given
        "gpt-4o-mini",  # simonw's `llm` default model
    }
)


async def resolve_model(registry: Registry, generation_type: str, ref: str | None) -> Target:
    """`registry.resolve_ref`, except that a hard-coded OpenAI name no instance has means the
    default model of `generation_type`, and Ollama's `:latest` tag is dropped (`_untagged`)."""
    ref = await _untagged(registry, ref)
    if (
        ref in OPENAI_MODEL_NAMES
        and ref not in registry.routes
        and not await _listed(registry, ref)
    ):
        return await registry.resolve(generation_type, None, None)
    return await registry.resolve_ref(generation_type, ref)


async def _untagged(registry: Registry, ref: str | None) -> str | None:
    """`ref` without Ollama's `:latest` unless a route or a listed model has that very name:
    the Ollama face lists `echo/echo:latest`, and Ollama-minded clients (Open WebUI's
    `/ollama/v1/...` proxies) send that name to these routes too, as Ollama accepts it."""
    if not ref or not ref.endswith(LATEST) or ref in registry.routes:
        return ref
    instance, _, model = ref.rpartition("/")
    binding = next((b for b in visible_bindings(registry) if b.instance_name == instance), None)
    if binding is None:  # a bare model name (or a hidden instance's): any instance may list it
        return ref if await _listed(registry, model) else ref.removesuffix(LATEST)
    try:
        models = await list_models_of(binding)
    except LollmsError:
        return ref  # resolving gives the instance's own error
    return ref if any(m.name == model for m in models) else ref.removesuffix(LATEST)


async def _listed(registry: Registry, name: str) -> bool:
    """True when some instance the caller may use lists a model called `name`."""

    async def has(binding: Binding) -> bool:
        try:
            models = await list_models_of(binding)
        except LollmsError:
            return False  # an instance that cannot list is no reason to refuse the alias
        return any(model.name == name for model in models)

    return any(await asyncio.gather(*(has(b) for b in visible_bindings(registry))))
