"""The one auth function for every route, the middleware that applies it, and page headers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from ..api.endpoint import doc_of
from ..errors import Forbidden, LollmsError, Unauthorized
from ..keys import AUDIT, KEYSTORE, LIMITER, SECURITY
from .local import Network, client_address, is_local_request
from .principal import Principal, reset_current, set_current

Access = Literal["public", "user", "admin"]
KEY_COOKIE = "lollms_key"
REQUEST_PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("lollms_principal")
REQUEST_KEY_REQUIRED: web.RequestKey[bool] = web.RequestKey("lollms_api_key_required")
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


def requires(access: Access) -> Callable[[Any], Any]:
    """Mark a handler that does not use `endpoint` as public, user or admin."""

    def mark(handler: Any) -> Any:
        handler.__lollms_access__ = access
        return handler

    return mark


def required_access(request: web.Request) -> Access:
    """The access level of the matched route: `endpoint(access=...)`, `requires`, or user."""
    info = request.match_info
    if info.http_exception is not None:
        return "public"  # no route: the 404/405 says nothing a caller could abuse
    handler = info.handler
    doc = doc_of(handler)
    if doc is not None:
        return doc.access
    if isinstance(info.route.resource, web.StaticResource):
        return "public"
    access: Access = getattr(handler, "__lollms_access__", "user")
    return access


def presented_key(request: web.Request) -> tuple[str | None, str]:
    """The key the client sent and where: `Authorization: Bearer`, `X-API-Key`, or the cookie."""
    authorization = request.headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), "header"
    if request.headers.get("X-API-Key", "").strip():
        return request.headers["X-API-Key"].strip(), "header"
    if request.cookies.get(KEY_COOKIE):
        return request.cookies[KEY_COOKIE], "cookie"
    return None, ""


def authenticate(request: web.Request) -> Principal | None:
    """Who is calling: a key's principal, the local machine, or None (no credential).

    A lollms-format key is always verified (401 if bad). On local access, a key in another
    format is ignored: OpenAI and Ollama clients insist on sending some key.
    """
    settings = request.app[SECURITY]
    client = client_address(request, settings.trusted_proxies)
    key, source = presented_key(request)
    local = settings.local_access and is_local_request(request, settings.trusted_proxies)
    if key is not None and (key.startswith("lollms_") or not local):
        record = request.app[KEYSTORE].verify(key)
        if source == "cookie" and not _cookie_safe(request):
            raise Forbidden("cross-site request with the key cookie refused")
        return record.principal(client)
    if local:
        return Principal(role="admin", name="local", client=client, local=True)
    return None


def _public_principal(request: web.Request) -> Principal | None:
    """On a public route a bad key is no reason to refuse: answer as to an anonymous caller."""
    try:
        return authenticate(request)
    except LollmsError:
        return None


def _cookie_safe(request: web.Request) -> bool:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return True
    return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")


def _key_id_prefix(request: web.Request) -> str | None:
    key, _ = presented_key(request)
    if key and key.startswith("lollms_"):
        return key[len("lollms_") :][:12] or None
    return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, authorize by route access level, apply rate limits, record failures."""
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return _preflight(request)
    access = required_access(request)
    try:
        principal = _public_principal(request) if access == "public" else authenticate(request)
        if access != "public":
            if principal is None:
                raise Unauthorized(
                    "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key`"
                )
            if access == "admin" and not principal.is_admin:
                raise Forbidden("this route needs the admin role")
        headers = await request.app[LIMITER].check_request(principal) if principal else {}
    except LollmsError as exc:
        if exc.status in (401, 403):
            await request.app[AUDIT].record(
                "auth_failed",
                key_id=_key_id_prefix(request),
                client=client_address(request, request.app[SECURITY].trusted_proxies),
                method=request.method,
                path=request.path,
                status=exc.status,
                detail={"reason": exc.message},
            )
        raise
    request[REQUEST_KEY_REQUIRED] = principal is None or not principal.local
    request[REQUEST_PRINCIPAL] = principal
    token = set_current(principal) if principal else None
    try:
        response = await handler(request)
    finally:
        if token is not None:
            reset_current(token)
    if not response.prepared:
        response.headers.update(headers)
    return response


def _preflight(request: web.Request) -> web.Response:
    origin = request.headers.get("Origin", "")
    if origin not in request.app[SECURITY].cors_origins:
        raise Forbidden("CORS: this origin is not allowed")
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, X-API-Key, Content-Type",
            "Access-Control-Max-Age": "600",
        },
    )


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: security headers everywhere, CORS only for allowed origins."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    origin = request.headers.get("Origin")
    if origin and origin in request.app[SECURITY].cors_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = ", ".join(
            v for v in (response.headers.get("Vary"), "Origin") if v
        )
