"""A request resolved to its target and ready to run: what the generation service, the faces
and personality scripts hand each other."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from ..bindings import GenerationRequest, Result
from ..errors import LollmsError
from ..listing import list_models_of
from ..registry import Target
from .personalities import Personality


@dataclass(frozen=True)
class Prepared:
    """A request resolved to its target, ready to run; each attempt on a fallback target gets
    its own copy (`on`), so what a face was handed always names what it asked for."""

    target: Target
    request: GenerationRequest
    personality: Personality | None
    face: str
    started: float
    # the request set no max_tokens: each target it runs on caps it at its default
    default_cap: bool = False
    # made by a personality's script: it runs in the script's concurrency slot
    in_script: bool = False
    # a tool loop's step: it runs in the concurrency slot its loop holds
    in_slot: bool = False

    @property
    def scripted(self) -> bool:
        """Whether a personality's script answers instead of a binding."""
        return self.personality is not None and self.personality.workflow is not None

    @property
    def elapsed_s(self) -> float:
        """Seconds since the request was prepared."""
        return time.monotonic() - self.started

    def on(self, target: Target) -> Prepared:
        """This request as sent to `target`: its model, and its default cap when none was set."""
        parameters = self.request.parameters
        if self.default_cap:
            cap = target.default_max_tokens
            if target is self.target and parameters.get("max_tokens") == cap:
                return self  # the first attempt: already as sent there
            parameters = {**parameters, "max_tokens": cap}
        elif target is self.target:
            return self
        request = dataclasses.replace(self.request, model=target.model, parameters=parameters)
        return dataclasses.replace(self, target=target, request=request)


async def served_by(prepared: Prepared, result: Result) -> Prepared:
    """`prepared` naming the model that served: a binding that used another model of its
    instance than the one asked (audio: `voice` naming another voice) says so in its outputs'
    metadata `model`; a name the instance does not list (a node's own) is left aside."""
    target = prepared.target
    said = {output.metadata.get("model") for output in result.outputs} - {target.model}
    served = next((name for name in said if isinstance(name, str)), None)
    if served is None:
        return prepared
    try:
        listed = await list_models_of(target.binding)
    except LollmsError:
        return prepared
    if not any(model.name == served for model in listed):
        return prepared
    return dataclasses.replace(prepared, target=dataclasses.replace(target, model=served))
