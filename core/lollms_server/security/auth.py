"""The one auth function for every route, the middleware that applies it, and page headers."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from ..errors import Forbidden, LollmsError, NotFound, Unauthorized
from ..httpkit.endpoint import doc_of
from ..keys import AUDIT, DRAIN, KEYSTORE, LIMITER, REQUEST_PRINCIPAL, SECURITY
from ..tracing import annotate, span
from .local import (
    SAFE_METHODS,
    Network,
    client_address,
    is_cross_site,
    is_local_request,
    is_proxy_itself,
)
from .principal import Principal, reset_current, set_current

log = logging.getLogger(__name__)
Access = Literal["public", "user", "admin"]
KEY_ID = re.compile(r"lollms_([0-9a-f]{12})_")
KEY_COOKIE = "lollms_key"
REQUEST_KEY_REQUIRED: web.RequestKey[bool] = web.RequestKey("lollms_api_key_required")
REQUEST_ORIGIN: web.RequestKey[tuple[str, bool]] = web.RequestKey("lollms_client_and_local")
#: The X-RateLimit-* headers of the request's rpm checks, added to its answer as it is prepared
#: (a stream's headers go out from inside the handler).
REQUEST_LIMIT_HEADERS: web.RequestKey[dict[str, str]] = web.RequestKey("lollms_limit_headers")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' data: blob:; connect-src 'self'; object-src 'none'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: a page's own form posts keep their Origin (a null Origin
    # would fail the local-access check), and nothing leaks to other sites
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True)
class SecuritySettings:
    """`[security]` of the config, parsed."""

    local_access: bool = True
    trusted_proxies: tuple[Network, ...] = ()
    cors_origins: frozenset[str] = frozenset()


def requires(access: Access, *, generates: bool = False) -> Callable[[Any], Any]:
    """Mark a handler that does not use `endpoint` as public, user or admin (`generates`: as
    `endpoint`'s)."""

    def mark(handler: Any) -> Any:
        handler.__lollms_access__ = access
        handler.__lollms_generates__ = generates
        return handler

    return mark


def declared_access(handler: Any, resource: web.AbstractResource | None) -> Access | None:
    """A route's declared access level: `endpoint(access=...)`, `requires(...)`, public for a
    static folder; None when it declares none (such a route is refused to everyone)."""
    doc = doc_of(handler)
    if doc is not None:
        return doc.access
    if isinstance(resource, web.StaticResource):
        return "public"
    access: Access | None = getattr(handler, "__lollms_access__", None)
    return access


def undeclared_routes(app: web.Application) -> list[str]:
    """`METHOD /path` of every route (sub-applications included) that declares no access."""
    found: list[str] = []
    for resource in app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            found += undeclared_routes(resource.get_info()["app"])
            continue
        for route in resource:
            if route.method != "HEAD" and declared_access(route.handler, resource) is None:
                found.append(f"{route.method} {resource.canonical}")
    return found


def starts_generation(request: web.Request) -> bool:
    """Whether the matched route starts a generation (`endpoint(generates=True)`, `requires`)."""
    info = request.match_info
    if info.http_exception is not None:
        return False
    doc = doc_of(info.handler)
    if doc is not None:
        return doc.generates
    return bool(getattr(info.handler, "__lollms_generates__", False))


def required_access(request: web.Request) -> Access | None:
    """The access level of the matched route, or None when it declares none (refused)."""
    info = request.match_info
    if info.http_exception is not None:
        return "public"  # no route: the 404/405 says nothing a caller could abuse
    return declared_access(info.handler, info.route.resource)


def presented_key(request: web.Request) -> tuple[str | None, str]:
    """The key the client sent and where: `Authorization: Bearer`, `X-API-Key`, or the cookie.

    Bytes that are not printable ASCII (no key has them) come back escaped: such a key fails
    verification and is audited like any bad key instead of breaking what writes it down.
    """
    key, source = _raw_key(request)
    if key is not None and not (key.isascii() and key.isprintable()):
        key = ascii(key)[1:-1]
    return key, source


def _raw_key(request: web.Request) -> tuple[str | None, str]:
    authorization = request.headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), "header"
    if request.headers.get("X-API-Key", "").strip():
        return request.headers["X-API-Key"].strip(), "header"
    if request.cookies.get(KEY_COOKIE):
        return request.cookies[KEY_COOKIE], "cookie"
    return None, ""


def client_and_local(request: web.Request) -> tuple[str, bool]:
    """The client's address, and whether local access applies to the request (worked out
    once per request: the middleware and `authenticate` both need them)."""
    known = request.get(REQUEST_ORIGIN)
    if known is None:
        settings = request.app[SECURITY]
        proxies = settings.trusted_proxies
        local = settings.local_access and is_local_request(request, proxies)
        known = request[REQUEST_ORIGIN] = (client_address(request, proxies), local)
    return known


async def authenticate(request: web.Request) -> Principal | None:
    """Who is calling: a key's principal, the local machine, or None (no credential).

    A lollms-format key is always verified (401 if bad). On local access, a key in another
    format is ignored: OpenAI and Ollama clients insist on sending some key.
    """
    client, local = client_and_local(request)
    key, source = presented_key(request)
    if key is not None and (key.startswith("lollms_") or not local):
        record = await request.app[KEYSTORE].verify(key)
        if source == "cookie":
            refuse_cross_site(request, "cross-site request with the key cookie refused")
        return record.principal(client)
    if local:
        return Principal(role="admin", name="local", client=client, local=True)
    return None


async def _public_principal(request: web.Request) -> Principal | None:
    """On a public route a bad key is no reason to refuse: answer as to an anonymous caller."""
    try:
        return await authenticate(request)
    except LollmsError:
        return None


def refuse_cross_site(request: web.Request, message: str = "cross-site request refused") -> None:
    """403 when another site's page made the browser send this state change (see
    `is_cross_site`): requests carrying the key cookie, and the login and logout forms."""
    proxies = request.app[SECURITY].trusted_proxies
    if request.method not in SAFE_METHODS and is_cross_site(request, proxies):
        raise Forbidden(message)


async def _known_key_id(request: web.Request, key: str | None) -> str | None:
    """The id in the presented lollms key when a key with that id exists (an invented id
    never reaches the audit log)."""
    match = KEY_ID.match(key or "")
    if match is None:
        return None
    try:
        return (await request.app[KEYSTORE].get(match.group(1))).id
    except NotFound:
        return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, authorize by route access level, apply rate limits, record failures."""
    with span("auth") as checking:
        admitted = await _admit(request)
        if isinstance(admitted, web.StreamResponse):
            return admitted
        principal, headers = admitted
        annotate(checking, key_id=principal.key_id if principal else None)
    request[REQUEST_KEY_REQUIRED] = principal is None or not principal.local
    request[REQUEST_PRINCIPAL] = principal
    request[REQUEST_LIMIT_HEADERS] = headers
    token = set_current(principal) if principal else None
    try:
        return await handler(request)
    finally:
        if token is not None:
            reset_current(token)


async def _admit(request: web.Request) -> tuple[Principal | None, dict[str, str]] | web.Response:
    """The caller and its rate-limit headers, or the CORS preflight's answer; raises when the
    caller may not call the route. A new generation while the server drains is refused first:
    its 503 started nothing, and the replica that serves its retry counts it (counted here
    too, a key's limit was spent twice by one request)."""
    if request.app[DRAIN].draining and starts_generation(request):
        request.app[DRAIN].admit()
    client, local = client_and_local(request)
    access = required_access(request)
    headers: dict[str, str] = {}
    if not local and not _health_check_of_a_proxy(request, access):
        # every request counts against its address, with a key, a bad key or none
        headers = await request.app[LIMITER].check_address(client)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return _preflight(request)
    try:
        if access is None:  # fail closed: a route nobody declared is nobody's
            raise Forbidden(
                f"{request.method} {request.path} declares no access level; refused "
                "(a handler declares one with `endpoint(access=...)` or `requires(...)`)"
            )
        principal = await (
            _public_principal(request) if access == "public" else authenticate(request)
        )
        if access != "public":
            if principal is None:
                raise Unauthorized(
                    "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key`"
                )
            if access == "admin" and not principal.is_admin:
                raise Forbidden("this route needs the admin role")
        if principal is not None:
            headers.update(await request.app[LIMITER].check_key(principal))
    except LollmsError as exc:
        if exc.status in (401, 403):
            await audit_auth_failure(request, exc, client, presented_key(request)[0])
        raise
    return principal, headers


async def audit_auth_failure(
    request: web.Request, exc: LollmsError, client: str, key: str | None
) -> None:
    """Record a refused credential (`key`, as presented: an API header or the login form) as an
    `auth_failed` row, naming its key id only when that key exists."""
    try:
        await request.app[AUDIT].failures.record(
            client=client,
            status=exc.status,
            reason=exc.message,
            key_id=await _known_key_id(request, key),
            method=request.method,
            path=request.path,
            user_agent=request.headers.get("User-Agent"),
        )
    except Exception:  # a failed audit write (counted) must not turn a 401 into a 500
        log.exception("could not audit an auth failure on %s", request.path)


def _health_check_of_a_proxy(request: web.Request, access: Access | None) -> bool:
    """A trusted proxy's own GET of a public route (no client forwarded): its health check,
    which `ip_rpm` must not refuse (the proxy would take the server out for everyone)."""
    proxies = request.app[SECURITY].trusted_proxies
    return access == "public" and request.method == "GET" and is_proxy_itself(request, proxies)


#: Request headers an allowed origin's page may always send.
CORS_ALLOWED_HEADERS = (
    "Authorization",
    "X-API-Key",
    "Content-Type",
    "X-Request-Id",
    "traceparent",
    "tracestate",
)
#: A header name (RFC 9110 token), as a preflight's Access-Control-Request-Headers lists them.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _preflight(request: web.Request) -> web.Response:
    """An allowed origin's preflight: the server's own headers, and those the page asks for
    (the openai JS SDK sends `X-Stainless-*` headers: refused, the browser sends nothing)."""
    origin = request.headers.get("Origin", "")
    if origin not in request.app[SECURITY].cors_origins:
        raise Forbidden("CORS: this origin is not allowed")
    asked = request.headers.get("Access-Control-Request-Headers", "").split(",")
    named = (*CORS_ALLOWED_HEADERS, *filter(HEADER_NAME.fullmatch, map(str.strip, asked)))
    names: dict[str, str] = {}  # each name once, in the server's spelling if it has one
    for name in named:
        names.setdefault(name.lower(), name)
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": ", ".join(names.values()),
            "Access-Control-Max-Age": "600",
            "Vary": "Origin, Access-Control-Request-Headers",
        },
    )


#: Response headers a browser page of an allowed origin may read (CORS hides the rest).
CORS_EXPOSED_HEADERS = ", ".join(
    (
        "X-Request-Id",
        "X-Lollms-Model",
        "X-Lollms-Ignored-Fields",
        "X-Lollms-Queue-Depth",
        "X-Lollms-Model-Queue-Depth",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "X-RateLimit-Limit-Tokens",
        "X-RateLimit-Remaining-Tokens",
        "X-RateLimit-Reset-Tokens",
        "Retry-After",
    )
)


def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Part of `prepare_answer`: security headers everywhere, the rpm checks' X-RateLimit-*
    headers, CORS only for allowed origins (and `Vary: Origin` on every answer when CORS is on)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    # not aiohttp's `Python/<version> aiohttp/<version>` (set before this hook): no version
    # list for scanners; the version the operator publishes is in /api/v1/health
    response.headers["Server"] = "lollms-server"
    for name, value in request.get(REQUEST_LIMIT_HEADERS, {}).items():
        response.headers.setdefault(name, value)
    allowed = request.config_dict[SECURITY].cors_origins  # a plugin sub-app has none of its own
    if not allowed:
        return
    # with CORS on, every answer depends on Origin (CORS headers or none): a shared cache must
    # not give the answer to one origin (or to none) to another
    varies = [v.strip() for v in response.headers.get("Vary", "").split(",") if v.strip()]
    if "origin" not in {v.lower() for v in varies}:
        response.headers["Vary"] = ", ".join([*varies, "Origin"])
    origin = request.headers.get("Origin")
    if origin and origin in allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS
