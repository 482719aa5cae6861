"""The model a speech request's `voice` names, so that it is the one loaded, booked and named."""

from __future__ import annotations

from typing import Any

from ..errors import LollmsError
from ..listing import list_models_of
from ..openai_names import resolve_model
from ..registry import Registry


async def voice_model(
    registry: Registry, model: str | None, parameters: dict[str, Any]
) -> str | None:
    """The model to speak with: `voice` when it names a tts model, a model id
    (`<instance>/<model>`, as the voice listings give them) or a model the instance `model`
    resolves to lists (taken out of the parameters: the lifecycle then loads and books the
    voice that speaks); else `model`. Other voices (speakers, OpenAI's stock names, espeak-ng
    languages) stay parameters of the binding."""
    voice = parameters.get("voice")
    if not isinstance(voice, str) or not voice:
        return model
    if "/" in voice:
        del parameters["voice"]
        return voice
    binding = (await resolve_model(registry, "tts", model)).binding
    try:
        listed = await list_models_of(binding)
    except LollmsError:
        return model  # the binding reports its own failure when it runs
    if not any(m.name == voice and (not m.capabilities or "tts" in m.capabilities) for m in listed):
        return model
    del parameters["voice"]
    return f"{binding.instance_name}/{voice}"
