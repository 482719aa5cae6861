"""The plugin SDK: everything a binding plugin imports from lollms-server, and nothing else.

A plugin's package code imports only `lollms_server.sdk` (its tests may also use
`lollms_server.testing`); `tests/test_sdk_surface.py` holds every shipped plugin to it. The
names below are the supported surface: the `Binding` base class and the typed objects that
cross the contract, the error taxonomy, the `hookimpl` marker, the `function` mark (for
`register_functions`: a name, a schema, `unsafe`), the context a binding is built
with, the upstream HTTP client and its resilience policy, media sniffing, the GPU probe, the
thread pool whose work a cancelled generation's slot waits for (`TrackedThreads`; a thread
of a plugin's own counts with `track_thread_work`) and a
few helpers the shipped plugins share.
"""

from __future__ import annotations

from .. import upstream_chat
from ..binding_context import BindingContext, default_data_dir
from ..binding_settings import SettingsSchema
from ..bindings import (
    CAPABILITIES,
    FEATURES,
    GENERATION_TYPES,
    NO_CONCURRENCY_CAP,
    Binding,
    ChatMessage,
    Chunk,
    GenerationRequest,
    Health,
    HealthState,
    InputItem,
    ModelInfo,
    Output,
    Result,
    Room,
    ToolCall,
    Usage,
    mask_secrets,
    monotonic_ms,
)
from ..errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    LoadRefused,
    LollmsError,
    MissingDependency,
    ModelNotFound,
    NotSupported,
    PayloadTooLarge,
    RateLimited,
    UnsupportedMediaType,
)
from ..function_marks import function
from ..gguf_header import ArrayLength, GGUFError, GGUFHeader, read_header
from ..hookspecs import hookimpl
from ..httpkit.convert import b64decode, encode_data
from ..masking import mask_url
from ..media_types import sniff, sniff_image
from ..node_headers import (
    FREE_MEMORY_HEADER,
    MODEL_QUEUE_HEADER,
    QUEUE_HEADER,
    parse_model_queue_header,
)
from ..offloop import TrackedThreads, track_thread_work
from ..ollama_wire import PASSED_ON_OPTIONS as OLLAMA_PASSED_ON_OPTIONS
from ..ollama_wire import KeepAlive
from ..resilience import RetryPolicy
from ..resources.gpu import GpuReport
from ..resources.gpu import probe as probe_gpus
from ..security.auth import requires
from ..security.principal import check_served, usable_models
from ..tracing import outgoing_headers
from ..upstream import Upstream
from ..video_frames import read_video
from ..whole_number import Whole

__all__ = [
    "CAPABILITIES",
    "FEATURES",
    "FREE_MEMORY_HEADER",
    "GENERATION_TYPES",
    "MODEL_QUEUE_HEADER",
    "NO_CONCURRENCY_CAP",
    "OLLAMA_PASSED_ON_OPTIONS",
    "QUEUE_HEADER",
    "ArrayLength",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "Binding",
    "BindingContext",
    "ChatMessage",
    "Chunk",
    "ContextLengthExceeded",
    "GGUFError",
    "GGUFHeader",
    "GenerationRequest",
    "GpuReport",
    "Health",
    "HealthState",
    "InputItem",
    "InvalidRequest",
    "KeepAlive",
    "LoadRefused",
    "LollmsError",
    "MissingDependency",
    "ModelInfo",
    "ModelNotFound",
    "NotSupported",
    "Output",
    "PayloadTooLarge",
    "RateLimited",
    "Result",
    "RetryPolicy",
    "Room",
    "SettingsSchema",
    "ToolCall",
    "TrackedThreads",
    "UnsupportedMediaType",
    "Upstream",
    "Usage",
    "Whole",
    "b64decode",
    "check_served",
    "default_data_dir",
    "encode_data",
    "function",
    "hookimpl",
    "mask_secrets",
    "mask_url",
    "monotonic_ms",
    "outgoing_headers",
    "parse_model_queue_header",
    "probe_gpus",
    "read_header",
    "read_video",
    "requires",
    "sniff",
    "sniff_image",
    "track_thread_work",
    "upstream_chat",
    "usable_models",
]
