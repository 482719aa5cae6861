"""The base of every contract mixin: the knobs, the `binding` fixture, the capability gate."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import pytest

from ..bindings import (
    GENERATION_TYPES,
    Binding,
    ChatMessage,
    GenerationRequest,
    InputItem,
    Output,
    Result,
)
from ..builtin import tiny_media
from .fixtures import started_binding
from .plugin import CAPABILITY_MARKER

try:
    import pytest_asyncio
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "lollms_server.testing needs pytest-asyncio: pip install 'lollms-server[test]'"
    ) from exc

F = TypeVar("F", bound=Callable[..., Any])
#: Generation types whose request is just a prompt, in the order the kit prefers them.
PROMPT_TYPES = ("ttt", "tti", "tts", "ttm", "ttv")


def contract(*capabilities: str) -> Callable[[F], F]:
    """Mark a contract test: run it under pytest-asyncio, skip it without `capabilities`."""

    def mark(func: F) -> F:
        marked: F = pytest.mark.asyncio(pytest.mark.lollms_capabilities(*capabilities)(func))
        return marked

    return mark


@dataclass(frozen=True)
class SpeechSample:
    """Audio for the transcription contract and the words a transcript must contain."""

    audio: bytes
    mime_type: str
    words: tuple[str, ...]


class ContractBase:
    """Knobs and fixtures shared by every contract mixin; set the knobs in your test class."""

    binding_class: ClassVar[type[Binding] | None] = None
    instance_name: ClassVar[str] = "contract"
    model: ClassVar[str] = ""
    image_model: ClassVar[str | None] = None
    speech_model: ClassVar[str | None] = None
    transcription_model: ClassVar[str | None] = None
    embedding_model: ClassVar[str | None] = None
    prompt: ClassVar[str] = "Count from one to twenty, in words, separated by spaces."
    text_parameters: ClassVar[Mapping[str, Any]] = {"temperature": 0.0, "seed": 42}
    startup_timeout_s: ClassVar[float] = 60.0
    request_timeout_s: ClassVar[float] = 120.0
    #: Suite tests that do not apply to this binding, each with the reason the report shows.
    not_applicable: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse a suite test switched off silently (`test_x = None`), redefined in a plugin's
        class (to skip it, or to pass without checking), or a stale declaration."""
        super().__init_subclass__(**kwargs)
        for name, value in vars(cls).items():
            if not (name.startswith("test_") and _suite_test(cls, name)):
                continue
            if not callable(value):
                raise TypeError(
                    f"{cls.__name__}.{name} = {value!r} switches a contract test off silently: "
                    f"declare it instead, not_applicable = {{{name!r}: '<why>'}}"
                )
            if not cls.__module__.startswith(__package__ or "lollms_server.testing"):
                raise TypeError(
                    f"{cls.__name__}.{name} overrides the contract test: tune it with its knobs "
                    f"or declare it, not_applicable = {{{name!r}: '<why>'}}"
                )
        for name, reason in cls.not_applicable.items():
            if not _suite_test(cls, name):
                raise TypeError(f"{cls.__name__}.not_applicable names {name!r}: no such suite test")
            if not reason.strip():
                raise TypeError(f"{cls.__name__}.not_applicable[{name!r}] needs a reason")

    @pytest.fixture
    def binding_settings(self) -> Mapping[str, Any]:
        """Raw settings (as in lollms.toml) of the instance under test; override it."""
        return {}

    @pytest_asyncio.fixture
    async def binding(
        self, request: pytest.FixtureRequest, binding_settings: Mapping[str, Any]
    ) -> AsyncIterator[Binding]:
        """A started, healthy instance of `binding_class` (skipped/failed if it cannot start)."""
        async with started_binding(
            self.binding_type(),
            self.instance_name,
            binding_settings,
            request=request,
            timeout_s=self.startup_timeout_s,
        ) as started:
            yield started

    @pytest.fixture(autouse=True)
    def _lollms_capability_gate(self, request: pytest.FixtureRequest) -> None:
        """Skip a test declared not applicable, or whose capabilities the binding lacks."""
        name = getattr(request.node, "originalname", request.node.name)
        if name in self.not_applicable:
            pytest.skip(f"not applicable to {type(self).__name__}: {self.not_applicable[name]}")
        marker = request.node.get_closest_marker(CAPABILITY_MARKER)
        if marker is None:
            return
        cls = self.binding_type()
        missing = sorted(set(marker.args) - set(cls.capabilities))
        if missing:
            pytest.skip(
                f"{cls.__name__} does not declare capability {', '.join(missing)} "
                f"(it declares: {', '.join(sorted(cls.capabilities)) or 'nothing'})"
            )

    @classmethod
    def binding_type(cls) -> type[Binding]:
        """The binding class under test (the `binding_class` knob, which must be set)."""
        if cls.binding_class is None:
            pytest.fail(f"{cls.__name__}: set the `binding_class` class attribute", pytrace=False)
        return cls.binding_class

    def model_for(self, generation_type: str) -> str:
        """The model knob for a generation type, falling back to `model`."""
        specific = {
            "tti": self.image_model,
            "i2i": self.image_model,
            "tts": self.speech_model,
            "stt": self.transcription_model,
            "embeddings": self.embedding_model,
        }.get(generation_type)
        chosen = specific or self.model
        if not chosen:
            pytest.fail(f"{type(self).__name__}: set the `model` class attribute", pytrace=False)
        return chosen

    def make_request(
        self,
        generation_type: str = "ttt",
        prompt: str | None = None,
        *,
        model: str | None = None,
        inputs: tuple[InputItem, ...] = (),
        **parameters: Any,
    ) -> GenerationRequest:
        """A request as the core would build it: one user message plus inputs and parameters."""
        merged = dict(self.text_parameters) if generation_type == "ttt" else {}
        merged.update(parameters)
        return GenerationRequest(
            generation_type=generation_type,
            model=model or self.model_for(generation_type),
            messages=(ChatMessage("user", self.prompt if prompt is None else prompt),),
            inputs=inputs or sample_inputs(generation_type),
            parameters=merged,
            request_id=f"contract-{generation_type}",
        )

    def first_generation_type(self, *, prompt_only: bool = True) -> str:
        """The first generation type the binding does (prompt-only types first)."""
        declared = self.binding_type().capabilities
        others = [t for t in GENERATION_TYPES if t not in PROMPT_TYPES]
        for generation_type in PROMPT_TYPES + (() if prompt_only else tuple(others)):
            if generation_type in declared:
                return generation_type
        kinds = "prompt-only generation type" if prompt_only else "generation type"
        pytest.skip(f"{self.binding_type().__name__} declares no {kinds} ({PROMPT_TYPES})")


def _suite_test(cls: type, name: str) -> bool:
    """Whether a base class of `cls` from the kit defines the test `name`."""
    return any(
        callable(vars(base).get(name)) and base.__module__.startswith(__package__ or "")
        for base in cls.__mro__[1:]
    )


def sample_inputs(generation_type: str) -> tuple[InputItem, ...]:
    """Tiny media inputs for the types that need one (i2i, stt, audio2audio)."""
    if generation_type == "i2i":
        image = tiny_media.png(tiny_media.gradient(8, 8, 1))
        return (InputItem("image", role="input_image", data=image, mime_type="image/png"),)
    if generation_type in ("stt", "audio2audio"):
        audio = tiny_media.tone_wav([440.0], 0.2)
        return (InputItem("audio", role="input_audio", data=audio, mime_type="audio/wav"),)
    return ()


def text_of(result: Result) -> str:
    """The joined text of a result's text outputs."""
    return "".join(output.text for output in result.outputs if output.type == "text")


def output_of(result: Result, kind: str) -> Output:
    """The first output of type `kind`, or a failure that lists what came back."""
    for output in result.outputs:
        if output.type == kind:
            return output
    got = [f"{o.type} ({o.mime_type})" for o in result.outputs]
    pytest.fail(f"expected an output of type {kind!r}; got {got}", pytrace=False)
