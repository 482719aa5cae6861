"""Conversions between lollms-server's typed objects and the Ollama API, and error mapping."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lollms_server.sdk import (
    OLLAMA_PASSED_ON_OPTIONS,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ChatMessage,
    InvalidRequest,
    LollmsError,
    ModelNotFound,
    NotSupported,
    PayloadTooLarge,
    RateLimited,
    Usage,
    mask_url,
)

DEFAULT_PORT = 11434
LATEST = ":latest"
#: Our parameter names -> Ollama option names.
OPTION_NAMES = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "seed": "seed",
    "stop": "stop",
    "max_tokens": "num_predict",
    "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    **{name: name for name in OLLAMA_PASSED_ON_OPTIONS},
}
#: Ollama's capability names (from /api/show) -> ours.
CAPABILITIES = {"completion": "ttt", "vision": "vision", "embedding": "embeddings"}
PARAMETER_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBT]?)\s*$", re.IGNORECASE)
SCALE = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
STATUS_ERRORS: dict[int, type[LollmsError]] = {
    400: InvalidRequest,
    413: PayloadTooLarge,
    422: InvalidRequest,
    429: RateLimited,
    501: NotSupported,
    503: BackendUnavailable,
    504: BackendTimeout,
}


def normalize_host(host: str) -> str:
    """A base URL from an OLLAMA_HOST-style value (`host:port`, or a URL); ValueError if bad."""
    text = host.strip()
    if "://" not in text:
        text = f"http://{text}"
        parts = urlsplit(text)
        if parts.port is None and parts.hostname:
            text = urlunsplit(parts._replace(netloc=f"{parts.netloc}:{DEFAULT_PORT}"))
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL or host:port, e.g. http://127.0.0.1:11434")
    _ = parts.port  # raises ValueError on a port that is not a number
    return text.rstrip("/")


def same_model(a: str, b: str) -> bool:
    """True when two Ollama names are the same model (`x` is `x:latest`)."""
    return a.removesuffix(LATEST) == b.removesuffix(LATEST)


def options(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Ollama `options` from binding parameters (unknown parameters are left out)."""
    found = {
        theirs: parameters[ours]
        for ours, theirs in OPTION_NAMES.items()
        if parameters.get(ours) is not None
    }
    if isinstance(found.get("stop"), str):
        found["stop"] = [found["stop"]]
    return found


def response_format(parameters: Mapping[str, Any]) -> str | dict[str, Any] | None:
    """Ollama `format` from `format` or an OpenAI-style `response_format` parameter."""
    given = parameters.get("format")
    if given == "json" or isinstance(given, dict):
        return given
    wanted = parameters.get("response_format")
    if not isinstance(wanted, Mapping):
        return None
    if wanted.get("type") == "json_object":
        return "json"
    schema = (wanted.get("json_schema") or {}).get("schema")
    return dict(schema) if wanted.get("type") == "json_schema" and schema else None


def messages(chat: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Ollama chat messages (images as raw bytes: the client sends them as base64)."""
    converted: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # call id -> function name: Ollama links a result by the name
    for message in chat:
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.images:
            item["images"] = [image.data for image in message.images]
        if message.tool_calls:
            item["tool_calls"] = [call.ollama() for call in message.tool_calls]
            names.update((call.id, call.name) for call in message.tool_calls)
        if message.role == "tool" and message.tool_call_id:
            item["tool_name"] = names.get(message.tool_call_id, message.tool_call_id)
        converted.append(item)
    return converted


def usage(part: Any) -> Usage:
    """Token counts of a final chat/generate part."""
    return Usage(int(part.prompt_eval_count or 0), int(part.eval_count or 0))


def finish_reason(part: Any) -> str:
    """Our finish reason from Ollama's `done_reason`."""
    return "length" if part.done_reason == "length" else "stop"


def parse_parameter_size(text: str | None) -> int | None:
    """`8.0B` -> 8_000_000_000; None when missing or not understood."""
    match = PARAMETER_SIZE.match(text or "")
    if not match:
        return None
    return int(float(match.group(1)) * SCALE[match.group(2).upper()])


def timestamp(value: datetime | None) -> str | None:
    """An RFC 3339 timestamp of a datetime the client parsed."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def shown_capabilities(shown: Any) -> frozenset[str]:
    """Our capability names from a /api/show answer."""
    names = shown.capabilities or []
    return frozenset(CAPABILITIES[name] for name in names if name in CAPABILITIES)


def shown_context_length(shown: Any) -> int | None:
    """The context length in a /api/show answer's model_info, if there is one."""
    for key, value in (shown.modelinfo or {}).items():
        if key.endswith(".context_length") and isinstance(value, int):
            return value
    return None


def backend_error(exc: BaseException, instance: str, url: str) -> LollmsError:
    """One of our errors, naming the instance, for a failure of the ollama client or httpx."""
    import httpx
    import ollama

    where = f"ollama instance {instance!r} ({mask_url(url)})"
    if isinstance(exc, ollama.ResponseError):
        status = exc.status_code
        said = "failed mid-stream" if status < 0 else f"answered {status}"
        message = f"{where} {said}: {exc.error}"
        if status == 404:
            return ModelNotFound(message, binding=instance, param="model")
        cls = STATUS_ERRORS.get(status, BackendError)
        return cls(message, binding=instance)
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, ConnectionError)):
        return BackendUnavailable(f"{where} cannot be reached: {_reason(exc)}", binding=instance)
    if isinstance(exc, httpx.TimeoutException):
        return BackendTimeout(f"{where} did not answer in time: {_reason(exc)}", binding=instance)
    if isinstance(exc, httpx.TransportError):
        return BackendUnavailable(f"{where}: connection failed: {_reason(exc)}", binding=instance)
    return BackendError(f"{where} answered unexpectedly: {_reason(exc)}", binding=instance)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
