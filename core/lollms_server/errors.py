"""The error taxonomy: every error the server reports, each with its HTTP status."""

from __future__ import annotations

import math
from typing import Any, ClassVar

#: The status logged, counted and audited for a request whose client left before its answer
#: (nginx's "client closed request"); never sent.
CLIENT_CLOSED = 499


class LollmsError(Exception):
    """Base of every error the server turns into a response."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    #: the Retry-After of an error that says no time of its own (None: no header)
    default_retry_after: ClassVar[float | None] = None

    def __init__(
        self,
        message: str,
        *,
        binding: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.binding = binding
        self.param = param
        self.retry_after = retry_after
        self.details = details or {}
        self.extra_headers: dict[str, str] = {}

    def to_dict(self) -> dict[str, Any]:
        """The lollms error body: `{"type", "message", "binding"?, "details"?}`."""
        body: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.binding:
            body["binding"] = self.binding
        if self.param:
            body["param"] = self.param
        if self.details:
            body["details"] = self.details
        return body

    def headers(self) -> dict[str, str]:
        """Extra response headers (Retry-After where it applies, X-RateLimit-*...)."""
        headers = dict(self.extra_headers)
        retry_after = self.default_retry_after if self.retry_after is None else self.retry_after
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        return headers


class InvalidRequest(LollmsError):
    """The request is malformed or its values are not allowed."""

    status = 400
    type = "invalid_request"


class ValidationFailed(InvalidRequest):
    """A well-formed body whose fields fail validation."""

    status = 422
    type = "validation_error"


class ContextLengthExceeded(InvalidRequest):
    """The prompt (with the tokens asked for) does not fit the model's context."""

    type = "context_length_exceeded"


class Unauthorized(LollmsError):
    """No valid credential was presented."""

    status = 401
    type = "unauthorized"


class Forbidden(LollmsError):
    """The credential is valid but not allowed to do this."""

    status = 403
    type = "forbidden"


class NotFound(LollmsError):
    """The named thing (route, instance, personality...) does not exist."""

    status = 404
    type = "not_found"


class ModelNotFound(NotFound):
    """The binding instance has no model of that name."""

    type = "model_not_found"


class MethodNotAllowed(LollmsError):
    """The route exists but not for this HTTP method."""

    status = 405
    type = "method_not_allowed"


class RequestTimeout(LollmsError):
    """The request body did not arrive in time."""

    status = 408
    type = "request_timeout"


class Conflict(LollmsError):
    """The request clashes with the server's state (a pinned or busy model...)."""

    status = 409
    type = "conflict"


class PayloadTooLarge(LollmsError):
    """The body or an upload is over the configured limit."""

    status = 413
    type = "payload_too_large"


class UnsupportedMediaType(LollmsError):
    """An upload or body is of a type the endpoint cannot read."""

    status = 415
    type = "unsupported_media_type"


class RateLimited(LollmsError):
    """Too many requests; retry after the given delay."""

    status = 429
    type = "rate_limited"


class NotSupported(LollmsError):
    """The binding does not implement this operation."""

    status = 501
    type = "not_supported"

    def headers(self) -> dict[str, str]:
        """`x-should-retry: false`: the OpenAI SDKs would otherwise retry a 5xx."""
        return {**super().headers(), "x-should-retry": "false"}


class BackendError(LollmsError):
    """The backend answered with a failure."""

    status = 502
    type = "backend_error"


class LoadRefused(BackendError):
    """The backend will not load a model ahead (a remote node's key may not); it may still
    load it on demand for a generation, so only an explicit load fails with it."""


class ModelLoadFailed(BackendError):
    """A model of a binding that holds its models in this process (`loads_models`) would not
    load (a damaged or truncated file): that model fails, not its instance, so it opens no
    circuit; the instance's other models go on serving."""


class BackendRefused(BackendError):
    """The backend refused this request to our credentials (its 403: a model our key there may
    not use); the backend itself is fine, so it opens no circuit; a route's next target may
    serve the request."""

    type = "backend_refused"


class LoopDetected(BackendError):
    """A request went through too many lollms-servers: a fleet that fronts itself."""

    status = 508
    type = "loop_detected"


class WorkflowFailed(BackendError):
    """A personality's script raised; the message names the script."""

    type = "workflow_error"


class BackendUnavailable(LollmsError):
    """The backend cannot be reached or is not running (a 503 always says when to retry)."""

    status = 503
    type = "backend_unavailable"
    default_retry_after = 1.0


class Overloaded(BackendUnavailable):
    """Every slot of the model is busy and its queue is full (or waited too long)."""

    type = "overloaded"


class Draining(BackendUnavailable):
    """The server is draining before it stops: a new generation goes elsewhere or later."""

    type = "draining"


class RateLimitsUnavailable(LollmsError):
    """The shared rate limit storage (Redis) cannot be reached and the config says to refuse."""

    status = 503
    type = "rate_limits_unavailable"
    default_retry_after = 1.0


class BackendTimeout(LollmsError):
    """The backend did not answer within the configured time."""

    status = 504
    type = "backend_timeout"


class MissingDependency(LollmsError):
    """A package the binding needs is not installed; the message says what to pip install."""

    status = 503
    type = "missing_dependency"


class ConfigError(Exception):
    """The configuration file is invalid; raised at start-up, never over HTTP."""
