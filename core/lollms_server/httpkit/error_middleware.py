"""The one place where errors become HTTP responses, in the shape of the face that was called."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..errors import (
    InvalidRequest,
    LollmsError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from ..keys import ERROR_RENDERERS, REQUEST_PRINCIPAL
from ..masking import for_caller
from ..trace import current_trace

log = logging.getLogger(__name__)

OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    501: "invalid_request_error",  # the binding lacks the operation: nothing to retry
}


#: lollms-webui's route names that `lollms-client` calls (faces/lollms/webui_compat.py).
WEBUI_PATHS = frozenset(
    [
        "/lollms_generate",
        "/lollms_generate_with_images",
        "/lollms_tokenize",
        "/lollms_detokenize",
        "/lollms_embed",
        "/list_models",
        "/list_mounted_personalities",
        "/text2Audio",
        "/list_voices",
        "/audio2text",
        "/list_stt_models",
    ]
)


def face_of(path: str) -> str:
    """Which face a path belongs to: `openai` (/v1), `ollama` (/api but not /api/v1), `web`
    (pages), `lollms` (/api/v1, /metrics, plugin routes under /-/, lollms-client's /lollms/v1
    and lollms-webui routes)."""
    if path == "/v1" or path.startswith("/v1/"):
        return "openai"
    if path == "/api/v1" or path.startswith(("/api/v1/", "/-/", "/lollms/v1/")):
        return "lollms"
    if path == "/metrics" or path in WEBUI_PATHS:
        return "lollms"
    if path == "/api" or path.startswith("/api/"):
        return "ollama"
    return "web"


def error_body(face: str, exc: LollmsError) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of an error for a face."""
    if face in ("openai", "ollama"):
        status = 400 if isinstance(exc, ValidationFailed) else exc.status
        message = exc.message
        if exc.binding and f"'{exc.binding}'" not in message:
            message = f"{message} (binding '{exc.binding}')"  # these shapes have no binding key
        if face == "ollama":
            return status, {"error": message}
        return status, {
            "error": {
                "message": message,
                "type": OPENAI_TYPES.get(status, "server_error"),
                "param": exc.param,
                "code": exc.type,
            }
        }
    body = exc.to_dict()
    trace = current_trace()
    if trace is not None:
        body["request_id"] = trace.request_id
    # `detail`: the string upstream lollms_server (FastAPI) answered with, read by its clients
    return exc.status, {"error": body, "detail": exc.message}


@dataclass(frozen=True)
class ErrorRenderer:
    """Another shape for the errors on some paths: the pages register their HTML error page."""

    applies: Callable[[str], bool]  # the request path is one of its own
    render: Callable[[web.Request, LollmsError], Awaitable[web.StreamResponse]]


def add_error_renderer(app: web.Application, renderer: ErrorRenderer) -> None:
    """Answer the errors on `renderer`'s paths with it (before the app starts)."""
    app[ERROR_RENDERERS] = (*app.get(ERROR_RENDERERS, ()), renderer)


async def error_response(request: web.Request, exc: LollmsError) -> web.StreamResponse:
    """The error in the shape of the face of `request` (JSON), or of the renderer registered
    for its path; server file paths in it cut to file names unless the caller is an admin."""
    exc = for_caller(exc, request.get(REQUEST_PRINCIPAL))
    for renderer in request.config_dict.get(ERROR_RENDERERS, ()):
        if renderer.applies(request.path):
            return await renderer.render(request, exc)
    status, body = error_body(face_of(request.path), exc)
    return web.json_response(body, status=status, headers=exc.headers())


def from_http_exception(exc: web.HTTPException) -> LollmsError:
    """Translate aiohttp's own HTTP errors (no route, wrong method, too large) into ours."""
    if exc.status == 404:
        return NotFound("no such route")
    if exc.status == 405:
        return MethodNotAllowed(f"method not allowed; use {exc.headers.get('Allow', '?')}")
    if exc.status == 413:
        return PayloadTooLarge("the request body is over the configured limit")
    error = InvalidRequest(exc.text or exc.reason)
    error.status = exc.status  # type: ignore[misc]
    return error


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Map every error a handler raises to the documented error shape."""
    response: web.StreamResponse
    try:  # written out here, not in a helper coroutine: one frame less per request
        response = await handler(request)
    except LollmsError as exc:
        response = await error_response(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = await error_response(request, from_http_exception(exc))
    except Exception:  # a bug of ours: log it, answer without internals
        log.exception("unhandled error on %s %s", request.method, request.path)
        error = LollmsError("internal server error; see the server log")
        response = await error_response(request, error)
    if response.headers.get("Connection") == "close" or not request.content.is_eof():
        # an answer given before the body arrived (a refused key, a rate limit): aiohttp closes
        # the connection rather than read the rest, so say so, or a client's next request on it
        # meets a connection reset
        if not response.prepared:
            response.headers["Connection"] = "close"
        response.force_close()
    return response
