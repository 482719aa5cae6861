"""The HTTP client bindings use to talk to OpenAI-compatible servers (aiohttp).

It owns the connection settings (base URL, optional API key, connect/read timeouts), retries
connect errors and 429/5xx answers before any byte of a response was consumed (Retry-After
honoured, capped; see `resilience.RetryPolicy`), never follows redirects, parses server-sent
events, and turns every failure into one of our errors naming the binding instance. Every call
carries the request id and W3C trace context (`tracing.outgoing_headers`), in a client span when
tracing is on. The API key is sent as a bearer token and nowhere else: it never appears in a
repr, a log line or an error message (an upstream that echoes it back gets it masked).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import yarl

from .errors import (
    BackendError,
    BackendRefused,
    BackendTimeout,
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    LollmsError,
    LoopDetected,
    ModelNotFound,
    NotSupported,
    PayloadTooLarge,
    RateLimited,
    UnsupportedMediaType,
    ValidationFailed,
)
from .masking import mask_url
from .resilience import Retryable, RetryPolicy, parse_retry_after
from .trace import MAX_HOPS, count_retry, current_trace
from .tracing import outgoing_headers, span
from .upstream_sse import (
    SseParser,
    error_payload,
    event_status,
    json_of,
    message_of,
    names_a_field,
)
from .upstream_stall import StallTimer

log = logging.getLogger(__name__)

#: Failures before any response byte that are safe to retry (nothing was consumed): refused
#: or timed-out connects, and pooled keep-alive connections the server had already closed.
CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientOSError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.ServerDisconnectedError,
)
MAX_ANSWER_BYTES = 512 * 1024 * 1024  # a whole answer larger than this is refused, not buffered
#: How backends say a prompt is over the context: OpenAI and vLLM (code), llama.cpp (type).
OVERFLOWS = ("context_length_exceeded", "exceed_context_size_error")
#: What `stream_events(..., mark_done=True)` yields for the upstream's `[DONE]` (by identity).
DONE: dict[str, Any] = {}
FormFactory = Callable[[], aiohttp.FormData]
HeadersFactory = Callable[[], Mapping[str, str]]
ResponseHook = Callable[[aiohttp.ClientResponse], None]


class Upstream:
    """A client of one OpenAI-compatible server, on behalf of one binding instance."""

    def __init__(
        self,
        instance: str,
        base_url: str,
        *,
        api_key: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 300.0,
        retry: RetryPolicy | None = None,
        label: str | None = None,
        headers: HeadersFactory | None = None,
        on_response: ResponseHook | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.instance = instance
        self.max_answer_bytes = max_answer_bytes
        self._given_url = base_url.rstrip("/")  # with any credentials: only for scrubbing
        self.url_for_logs = mask_url(self._given_url)
        url = yarl.URL(base_url.rstrip("/"))
        # credentials in the URL become a basic Authorization header (aiohttp refuses them next
        # to a header); an API key, when set too, wins: one request carries one such header
        self._authorization = f"Bearer {api_key}" if api_key else None
        if url.user and api_key:
            log.warning("%s: api_key is set, so the credentials in base_url are not sent", instance)
        elif url.user:
            self._authorization = aiohttp.encode_basic_auth(url.user, url.password or "")
        self.base_url = str(url.with_user(None)) if url.user else base_url.rstrip("/")
        self.label = label or f"backend of {instance!r}"
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.retry = retry or RetryPolicy()
        self._api_key = api_key or None
        self._session: aiohttp.ClientSession | None = None
        self._headers = headers  # per-request extras, read per send (after the request id and
        # trace context that every call carries)
        self._on_response = on_response  # sees every answer's status and headers, 2xx or not

    def __repr__(self) -> str:
        key = "***" if self._api_key else None
        return f"Upstream({self.instance!r}, {self.url_for_logs!r}, api_key={key!r})"

    async def close(self) -> None:
        """Close the connection pool (idempotent)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def get_json(
        self, path: str, *, timeout_s: float | None = None, retry: bool = True
    ) -> Any:
        """GET `path` and decode its JSON answer."""
        async with self._open("GET", path, timeout_s=timeout_s, retry=retry) as response:
            return await self._json_of(response)

    async def post_json(
        self,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        form: FormFactory | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """POST a JSON body (or a multipart form) and decode the JSON answer."""
        async with self._open("POST", path, body=body, form=form, timeout_s=timeout_s) as response:
            return await self._json_of(response)

    async def post_for_bytes(
        self,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        form: FormFactory | None = None,
    ) -> tuple[bytes, str]:
        """POST and return the raw answer with its content type (audio, images)."""
        async with self._open("POST", path, body=body, form=form) as response:
            return await self._read(response), response.content_type

    async def stream_events(
        self, path: str, body: Mapping[str, Any], *, mark_done: bool = False
    ) -> AsyncGenerator[dict[str, Any], None]:
        """POST and yield the JSON `data:` events of the SSE answer until `[DONE]` (`mark_done`:
        then yield `DONE`, so the caller knows the upstream said it finished).

        Closing the generator closes the HTTP response, so the server sees the client leave.
        A stream cut mid-way raises BackendUnavailable and is never replayed. An upstream that
        answers with plain JSON instead of a stream yields that object once.
        """
        async with self._open("POST", path, body=body) as response:
            if response.content_type != "text/event-stream":
                yield await self._json_of(response)
                return
            parser, ended = SseParser(self.label), False
            stall = StallTimer(response, self.read_timeout_s)
            try:
                while not ended:
                    piece = await response.content.readany()
                    stall.progress()
                    if not piece:  # the end: two newlines close a last event left unclosed
                        piece, ended = b"\n\n", True
                    for data in parser.feed(piece):
                        if data == b"[DONE]":
                            if mark_done:
                                yield DONE
                            return
                        event = self._decode(data)
                        if isinstance(event, dict) and event.get("error"):
                            raise self.status_error(event_status(event), event, None, path)
                        if isinstance(event, dict):
                            yield event
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self.error(exc, reading=True) from exc
            except RuntimeError as exc:  # aiohttp: the client was closed under the stream
                raise BackendUnavailable(
                    f"{self.label}: the connection was closed mid-answer", binding=self.instance
                ) from exc
            finally:
                stall.close()

    @asynccontextmanager
    async def _open(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        form: FormFactory | None = None,
        timeout_s: float | None = None,
        retry: bool = True,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A successful (2xx) response, after retries; closed or released on exit."""
        url = f"{self.base_url}{path}"
        if (trace := current_trace()) is not None and trace.hops >= MAX_HOPS:
            message = f"{self.label}: the request went through {trace.hops} lollms-servers"
            raise LoopDetected(f"{message} already (a fleet loop?)", binding=self.instance)
        timeout = aiohttp.ClientTimeout(
            total=timeout_s,
            connect=min(self.connect_timeout_s, timeout_s or self.connect_timeout_s),
            sock_read=self.read_timeout_s,
        )
        policy = self.retry if retry else RetryPolicy(attempts=1)
        log.debug("%s %s%s for %s", method, self.url_for_logs, path, self.instance)
        where = {"url.full": f"{self.url_for_logs}{path}", "lollms.instance": self.instance}
        with span(f"{method} {path.partition('?')[0]}", where, client=True) as call:
            try:
                response = await policy.call(
                    lambda: self._send(method, url, path, body, form, timeout),
                    CONNECT_ERRORS,
                    on_retry=lambda: count_retry(self.instance),
                )
            except LollmsError:
                raise
            except Retryable as exc:
                status = exc.status or 502
                raise self.status_error(status, exc.message, exc.retry_after, path) from None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise self.error(exc) from exc
            if call is not None:
                call.set_attribute("http.response.status_code", response.status)
            try:
                yield response
            finally:
                if response.content.at_eof():
                    response.release()
                else:
                    response.close()  # unread body: drop the connection so the server stops too

    async def _send(
        self,
        method: str,
        url: str,
        path: str,
        body: Mapping[str, Any] | None,
        form: FormFactory | None,
        limits: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        headers = {"Accept": "application/json, text/event-stream", **outgoing_headers()}
        if self._headers is not None:
            headers.update(self._headers())
        if self._authorization:
            headers["Authorization"] = self._authorization
        response = await self._client().request(
            method,
            url,
            json=body if form is None else None,
            data=form() if form is not None else None,
            headers=headers,
            timeout=limits,
            allow_redirects=False,
        )
        if self._on_response is not None:
            self._on_response(response)
        if response.status < 300:
            return response
        try:
            payload = await error_payload(response)
        finally:
            response.release()
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if response.status == 429 or (response.status >= 500 and response.status not in (501, 508)):
            message = self.scrub(message_of(payload))
            log.warning("%s: %s answered %d: %s", self.label, path, response.status, message)
            raise Retryable(message, status=response.status, retry_after=retry_after)
        raise self.status_error(response.status, payload, retry_after, path)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # no connection cap: the scheduler bounds concurrency per model, and a capped pool
            # would make request 101 wait and time out as if the upstream were unreachable
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, refused (502) once it passes `max_answer_bytes`: never buffered."""
        parts: list[bytes] = []
        cap = self.max_answer_bytes
        size = 0 if (response.content_length or 0) <= cap else cap + 1  # said too big: no read
        try:
            while size <= cap and (piece := await response.content.readany()):
                size += len(piece)
                parts.append(piece)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.error(exc, reading=True) from exc
        if size > cap:
            raise BackendError(f"{self.label} answered over {cap} bytes", binding=self.instance)
        return b"".join(parts)

    async def _json_of(self, response: aiohttp.ClientResponse) -> Any:
        raw = await self._read(response)  # JSON is UTF-8 (RFC 8259)
        return self._decode(raw)

    def _decode(self, text: str | bytes) -> Any:
        try:  # bytes decoded here: json.loads would sniff their encoding first
            return json_of(text if isinstance(text, str) else text.decode())
        except ValueError:  # UnicodeDecodeError included
            shown = text[:200] if isinstance(text, str) else text[:200].decode(errors="replace")
            raise BackendError(
                f"{self.label} answered with something that is not JSON: {self.scrub(shown)!r}",
                binding=self.instance,
            ) from None

    def scrub(self, text: str) -> str:
        """`text` with the API key (and this server's credentials) masked."""
        if self._api_key:
            text = text.replace(self._api_key, "***")
        if self._given_url != self.url_for_logs:
            text = text.replace(self._given_url, self.url_for_logs)
        return text

    def error(self, exc: BaseException, *, reading: bool = False) -> LollmsError:
        """One of our errors for a transport failure (connect, timeout, broken stream)."""
        name = self.instance
        if isinstance(exc, LollmsError):
            return exc
        if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
            why = getattr(getattr(exc, "os_error", None), "strerror", None) or type(exc).__name__
            log.warning("%s at %s cannot be reached: %s", self.label, self.url_for_logs, why)
            return BackendUnavailable(f"{self.label} cannot be reached ({why})", binding=name)
        if isinstance(exc, TimeoutError):
            what = "stopped sending" if reading else "did not answer"
            return BackendTimeout(
                f"{self.label} {what} within {self.read_timeout_s}s", binding=name
            )
        if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)):
            where = "mid-answer" if reading else "before answering"
            return BackendUnavailable(
                f"{self.label} closed the connection {where} ({type(exc).__name__})", binding=name
            )
        return BackendError(
            f"{self.label} failed: {type(exc).__name__}: {self.scrub(str(exc))}", binding=name
        )

    def status_error(
        self, status: int, payload: Any, retry_after: float | None, path: str
    ) -> LollmsError:
        """Our error for an HTTP error status of the upstream, with its (masked) message."""
        message = self.scrub(message_of(payload))
        text = f"{self.label} answered {status}: {message}"
        kwargs: dict[str, Any] = {
            "binding": self.instance,
            "retry_after": retry_after,
            "details": {"upstream_status": status},
        }
        if 300 <= status < 400:
            return BackendError(
                f"{self.label} answered with a redirect ({status}), not followed", **kwargs
            )
        if status == 400 and any(mark in json.dumps(payload) for mark in OVERFLOWS):
            too_long = f"the prompt is too long for the model's maximum context length: {text}"
            return ContextLengthExceeded(too_long, param="messages", **kwargs)
        if status == 404:
            if "model" in json.dumps(payload).lower() or names_a_field(payload):
                return ModelNotFound(text, param="model", **kwargs)
            return NotSupported(f"{self.label} has no {path} (404)", **kwargs)
        if status == 403:  # the key is good, this request is not: no circuit opens for it
            return BackendRefused(
                f"{self.label} refused this to our key (403): {message}", **kwargs
            )
        if status == 401:
            return BackendError(f"{self.label} refused the configured credentials (401)", **kwargs)
        mapped: dict[int, type[LollmsError]] = {
            405: NotSupported,
            408: BackendTimeout,
            413: PayloadTooLarge,
            415: UnsupportedMediaType,
            422: ValidationFailed,
            429: RateLimited,
            501: NotSupported,
            503: BackendUnavailable,
            504: BackendTimeout,
            508: LoopDetected,
        }
        cls = mapped.get(status) or (BackendError if status >= 500 else InvalidRequest)
        return cls(text, **kwargs)
