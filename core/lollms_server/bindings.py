"""The Binding base class and the typed objects that cross the plugin contract."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from marshmallow import Schema

from .binding_context import BindingContext
from .binding_settings import settings_dict
from .chunks import Chunk as Chunk
from .chunks import Output as Output
from .chunks import Result as Result
from .chunks import ToolCall as ToolCall
from .chunks import Usage as Usage
from .chunks import closing_stream as closing_stream
from .chunks import join_stream as join_stream
from .chunks import replayable, tool_calls
from .chunks import result_chunks as result_chunks
from .errors import InvalidRequest, NotSupported
from .masking import mask_text

GENERATION_TYPES: tuple[str, ...] = ("ttt", "tti", "i2i", "tts", "stt", "ttv", "ttm", "audio2audio")
FEATURES: tuple[str, ...] = ("stream", "load_unload", "vision", "tools", "embeddings")
CAPABILITIES: frozenset[str] = frozenset(GENERATION_TYPES + FEATURES)
DEFAULT_MAX_TOKENS = 4096  # a text request that sets no max_tokens gets this many at most
NO_CONCURRENCY_CAP = 1_000_000  # remote bindings: the upstream server decides what runs at once

InputType = Literal["text", "image", "audio", "video", "document"]
HealthState = Literal["up", "degraded", "down"]


@dataclass(frozen=True)
class InputItem:
    """One input of a request: text, or binary media with its mime type."""

    type: str
    role: str = "user_prompt"
    text: str = ""
    data: bytes = b""
    mime_type: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChatMessage:
    """One turn of a conversation, with optional images for vision models."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    images: tuple[InputItem, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()  # mappings become ToolCalls; non-JSON arguments `{}`
    tool_call_id: str | None = None

    def __post_init__(self) -> None:
        if self.tool_calls:
            calls = tuple(replayable(call) for call in tool_calls(self.tool_calls))
            object.__setattr__(self, "tool_calls", calls)


def link_tool_results(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The conversation with each tool result's `tool_call_id` the id of the call it answers,
    where a client linked it by the function's name (Ollama's `tool_name`, OpenAI's deprecated
    `function` role) or not at all: the first call of the assistant message before it that no
    result answered yet, of that name. OpenAI-compatible servers refuse a result whose id is
    no call's."""
    linked: list[ChatMessage] = []
    waiting: list[ToolCall] = []  # the last assistant message's calls no result answered
    for message in messages:
        if message.tool_calls:
            waiting = list(message.tool_calls)
        elif message.role == "tool" and waiting:
            link = message.tool_call_id
            call = next((c for c in waiting if c.id == link), None) or next(
                (c for c in waiting if link in (c.name, None)), None
            )
            if call is not None:
                waiting.remove(call)
                message = replace(message, tool_call_id=call.id)
        linked.append(message)
    return linked


@dataclass(frozen=True)
class GenerationRequest:
    """What a binding is asked to produce; built by the core, never raw JSON."""

    generation_type: str
    model: str
    messages: tuple[ChatMessage, ...] = ()
    inputs: tuple[InputItem, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    request_id: str = ""
    raw_prompt: bool = False  # True for plain completions: messages hold a single prompt

    @property
    def prompt(self) -> str:
        """The last user message's text (the prompt for media generation)."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""

    def inputs_with_role(self, *roles: str) -> list[InputItem]:
        """Inputs whose role is one of `roles`, in order."""
        return [item for item in self.inputs if item.role in roles]


@dataclass(frozen=True)
class ModelInfo:
    """What a binding knows about one of its models."""

    name: str
    family: str | None = None
    size_bytes: int | None = None
    parameters: int | None = None
    quantization: str | None = None
    context_length: int | None = None
    capabilities: frozenset[str] = frozenset()
    memory_bytes: int | None = None
    loaded: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Room:
    """A backend's memory for one model: the bytes it would have left with the model in memory
    (negative: it does not fit), and whether the model is in its memory already."""

    left: float
    loaded: bool = False


@dataclass(frozen=True)
class Health:
    """A binding instance's health at one moment."""

    state: HealthState
    detail: str = ""
    latency_ms: float | None = None
    restartable: bool = False  # a managed process died: the health monitor calls `restart()`
    # the backend is a server that drains before a planned stop (a node's SIGTERM): it serves
    # nothing (down) but is not failing, so the monitor does not count it as a failed check
    draining: bool = False


class EmptySettings(Schema):
    """Settings schema for bindings that take none."""


class Binding:
    """Base class of every binding type; subclass it in a plugin and register it."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    ConfigSchema: ClassVar[type[Schema]] = EmptySettings
    secret_settings: ClassVar[frozenset[str]] = frozenset({"api_key"})
    # generations of one model at once (the scheduler queues the rest): what a local backend
    # really runs in parallel; remote bindings set NO_CONCURRENCY_CAP
    default_concurrency: ClassVar[int] = 4
    # the cap of a text request that sets no `max_tokens`; `[bindings.x] default_max_tokens`
    # sets it per instance (the registry assigns it after construction)
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    # True: the core picks a GPU per model (`device_for`); a class attribute, or set per
    # instance in `startup()` by a binding that learns there whether it can use a GPU
    gpu_placement: bool = False
    # True: an instance holds models in this process (RAM, GPU), so `serve --workers N` refuses
    # N > 1 with it (each worker would load them again); False for bindings that call a server
    loads_models: ClassVar[bool] = True
    # False: its models live on another server that keeps its own memory books (a lollms node),
    # so they take nothing of this server's budgets and never make room by unloading ours
    books_memory: ClassVar[bool] = True
    # the input roles the binding honours per generation type ({"i2i": {"input_image"}});
    # None: it says nothing and gets every input. The core refuses any other role (400).
    input_roles: ClassVar[Mapping[str, frozenset[str]] | None] = None
    # the request parameters the binding reads (any generation type); None: it says nothing.
    # The lollms face names the others a request sends in X-Lollms-Ignored-Fields.
    parameters_read: ClassVar[frozenset[str] | None] = None

    def __init__(
        self,
        instance_name: str,
        config: Mapping[str, Any] | Any,
        *,
        context: BindingContext | None = None,
    ) -> None:
        self.instance_name = instance_name
        # what the ConfigSchema loaded: a `SettingsSchema` gives its dataclass (`self.settings`,
        # read as attributes); `self.config` is the same as a dict (shown masked)
        self.settings: Any = None if isinstance(config, Mapping) else config
        self.config = settings_dict(config)
        self.context = context or BindingContext()  # the server's data dir, models folder
        self.placements: dict[str, str] = {}

    def device_for(self, model: str) -> str | None:
        """Where the core placed `model` ("cpu", "cuda:1"), set before `load(model)`; or None."""
        return self.placements.get(model)

    def max_concurrency(self, model: str) -> int:
        """How many generations of `model` may run at once (the scheduler queues the rest)."""
        return self.default_concurrency

    def max_loaded(self) -> int | None:
        """How many models this instance keeps in memory at once by a setting of its own, or
        None: the server books the same limit and unloads past it, so its books stay true."""
        return None

    def context_length(self, model: str) -> int | None:
        """The tokens one generation of `model` may use, where known without I/O (or None);
        the default `max_tokens` never goes past it."""
        return None

    def reported_load(self, model: str) -> float | None:
        """Generations of `model` the backend last said it runs or queues (a remote node's
        figure, fresh from its latest answer), or None when it reports none."""
        return None

    def reported_room(self, model: str) -> Room | None:
        """What the backend last said of its memory for `model`, or None."""
        return None

    def check_input_roles(self, request: GenerationRequest) -> None:
        """Refuse (400, naming it) an input role the binding would not honour for the type."""
        if self.input_roles is None:
            return
        honoured = self.input_roles.get(request.generation_type, frozenset())
        for item in request.inputs:
            if item.role not in honoured:
                allowed = ", ".join(sorted(honoured)) or "none"
                raise InvalidRequest(
                    f"{self.instance_name!r} does not honour input role {item.role!r} "
                    f"for {request.generation_type}; roles it honours: {allowed}",
                    param="input_data",
                )

    async def check_request(self, request: GenerationRequest) -> None:
        """Refuse (400, naming it) what the request asks that the binding can tell is wrong
        before its model loads or its queue is waited in; the default checks nothing."""

    def supports(self, capability: str) -> bool:
        """True when the class declares `capability`."""
        return capability in self.capabilities

    async def startup(self) -> None:
        """Open clients or spawn processes; called once when the server starts."""

    async def shutdown(self) -> None:
        """Close clients and stop processes; called once when the server stops."""

    async def health(self) -> Health:
        """Report whether the backend answers; must never raise."""
        return Health("up")

    async def restart(self) -> None:
        """Bring back managed processes that died; called when `health()` says `restartable`."""

    async def list_models(self) -> list[ModelInfo]:
        """The models this instance can serve; raise BackendUnavailable on failure."""
        raise NotImplementedError

    async def default_model(self, generation_type: str) -> str | None:
        """The model a `generation_type` request naming none gets: the first listed model
        that does that type (or says nothing of its capabilities), else the first listed."""
        models = await self.list_models()
        for info in models:
            if not info.capabilities or generation_type in info.capabilities:
                return info.name
        return models[0].name if models else None

    async def load(self, model: str) -> int | None:
        """Load a model (idempotent); return bytes used where known."""
        raise NotSupported(f"{self.name} cannot load models", binding=self.instance_name)

    async def unload(self, model: str) -> None:
        """Unload a model and free its memory (idempotent)."""
        raise NotSupported(f"{self.name} cannot unload models", binding=self.instance_name)

    def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Yield chunks; must release the upstream request when closed early."""
        raise NotSupported(f"{self.name} cannot stream", binding=self.instance_name)

    async def generate(self, request: GenerationRequest) -> Result:
        """Produce a whole result; the default joins `stream()`."""
        return await join_stream(self.stream(request))

    async def embed(self, texts: list[str], model: str) -> list[list[float]]:
        """Embedding vectors for `texts`."""
        raise NotSupported(f"{self.name} has no embeddings", binding=self.instance_name)

    async def tokenize(self, text: str, model: str) -> list[int]:
        """Token ids of `text` under `model`'s tokenizer."""
        raise NotSupported(f"{self.name} cannot tokenize", binding=self.instance_name)

    async def detokenize(self, tokens: list[int], model: str) -> str:
        """Text of token ids under `model`'s tokenizer."""
        raise NotSupported(f"{self.name} cannot detokenize", binding=self.instance_name)

    async def special_tokens(self, model: str) -> tuple[int | None, int | None]:
        """The BOS and EOS token ids of `model`'s tokenizer (None: it has none, or unknown)."""
        return None, None

    def public_settings(self) -> dict[str, Any]:
        """The instance's settings with secrets masked, safe to show anyone."""
        return mask_secrets(self.config, self.secret_settings)


def mask_secrets(settings: Mapping[str, Any], secret_keys: frozenset[str]) -> dict[str, Any]:
    """Copy of `settings` where every secret-looking value is replaced by '***' and every URL
    has its credentials masked (`mask_text`)."""
    masked: dict[str, Any] = {}
    for key, value in settings.items():
        lowered = key.lower()
        is_secret = key in secret_keys or any(
            word in lowered for word in ("key", "token", "secret", "password")
        )
        if isinstance(value, Mapping):
            masked[key] = mask_secrets(value, secret_keys)
        elif is_secret and value not in (None, "") and not lowered.endswith("_env"):
            masked[key] = "***"
        else:
            masked[key] = _mask_urls(value)
    return masked


def _mask_urls(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, list | tuple):
        return [_mask_urls(item) for item in value]
    return value


def monotonic_ms() -> float:
    """Milliseconds on the monotonic clock, for latency measurements."""
    return time.monotonic() * 1000.0
