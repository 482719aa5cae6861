"""Rendering: one partial serves the full page and the htmx swap; errors render in place.

A page template `{% include %}`s its partial; `render` returns the partial alone when htmx asks
(`HX-Request: true`) and always sends `Vary: HX-Request` and `Cache-Control: no-store` (a page
shows what one key may see, and the keys page a new key's secret: no cache, shared or the
browser's back button, may keep one). `page_handler` turns every error a
page handler raises into the `_error.html` partial (a full `error.html` page without htmx) with
the error's status, so a 422 from a form swaps in where the result would have gone.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web

from .. import __version__
from ..errors import LollmsError
from ..httpkit.error_middleware import face_of, from_http_exception
from ..keys import REQUEST_PRINCIPAL
from ..masking import for_caller
from ..security.auth import KEY_COOKIE, Access

log = logging.getLogger(__name__)
VARY = {"Vary": "HX-Request"}
NO_STORE = {"Cache-Control": "no-store"}
LINE_BREAK = re.compile(r"\r\n|\r|\n")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# (link, label, the path prefix that marks it current, who may open it)
NAV: tuple[tuple[str, str, str, Access], ...] = (
    ("/", "Dashboard", "/", "user"),
    ("/bindings", "Bindings", "/bindings", "user"),
    ("/models", "Models", "/models", "user"),
    ("/personalities", "Personalities", "/personalities", "user"),
    ("/functions", "Functions", "/functions", "user"),
    ("/playground/chat", "Playground", "/playground", "user"),
    ("/admin/keys", "Keys", "/admin/keys", "admin"),
    ("/admin/audit", "Audit", "/admin/audit", "admin"),
    ("/api-docs", "API docs", "/api-docs", "public"),
)


def is_htmx(request: web.Request) -> bool:
    """True when htmx wants a fragment; a history restore (cache miss) needs the whole page."""
    headers = request.headers
    return (
        headers.get("HX-Request") == "true" and headers.get("HX-History-Restore-Request") != "true"
    )


def page_context(request: web.Request, context: Mapping[str, Any]) -> dict[str, Any]:
    """What every template may use, plus the handler's own context: the nav shows the pages
    the caller may open, and a sign-out button to a browser that keeps a key."""
    principal = request.get(REQUEST_PRINCIPAL)  # None when auth refused the request
    admin = principal is not None and principal.is_admin
    nav = [
        (href, label, prefix) for href, label, prefix, access in NAV if admin or access != "admin"
    ]
    current = next((href for href, _, prefix in nav if _under(request.path, prefix)), None)
    return {
        "request": request,
        "nav": nav,
        "current": current,
        "signed_in": KEY_COOKIE in request.cookies,
        "version": __version__,
        **context,
    }


def _under(path: str, prefix: str) -> bool:
    if prefix == "/":
        return path == "/"
    return path == prefix or path.startswith(prefix + "/")


async def render(
    request: web.Request,
    page: str,
    partial: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The full page, or only the partial when htmx asks for it."""
    name = partial if is_htmx(request) else page
    response = await aiohttp_jinja2.render_template_async(
        name, request, page_context(request, context), status=status
    )
    response.headers.update({**VARY, **NO_STORE})
    response.headers.update(headers or {})
    return response


async def render_string(request: web.Request, template: str, context: Mapping[str, Any]) -> str:
    """A template rendered to a string (for SSE payloads)."""
    return await aiohttp_jinja2.render_string_async(
        template, request, page_context(request, context)
    )


def see_other(location: str) -> web.Response:
    """303 to a page: what a form posted without JavaScript gets after a successful action."""
    return web.Response(status=303, headers={"Location": location, **VARY})


def is_page_path(path: str) -> bool:
    """Whether `path` is a page's (no API face claims it): its errors are pages too."""
    return face_of(path) == "web"


async def page_error(request: web.Request, exc: LollmsError) -> web.Response:
    """A page's error: the error page or partial; a page that needs a key sends the browser
    to the login page instead; an EventSource gets it as events."""
    if "text/event-stream" in request.headers.get("Accept", ""):
        return await event_error(request, exc)
    if exc.status == 401 and request.method == "GET" and not is_htmx(request):
        return see_other(f"/login?{urlencode({'next': request.path_qs})}")
    return await render_error(request, exc)


async def render_error(request: web.Request, exc: LollmsError) -> web.Response:
    """The error partial (or full error page) with the server's message and the error status."""
    exc = for_caller(exc, request.get(REQUEST_PRINCIPAL))
    context = {"error": exc, "status": exc.status}
    return await render(
        request, "error.html", "_error.html", context, status=exc.status, headers=exc.headers()
    )


def sse_message(event: str, payload: str) -> bytes:
    """One named SSE message; every line of `payload` becomes a `data:` line."""
    lines = "".join(f"data: {line}\n" for line in LINE_BREAK.split(payload))
    return f"event: {event}\n{lines}\n".encode()


async def event_error(request: web.Request, exc: LollmsError) -> web.Response:
    """An error for an EventSource (a playground stream refused, e.g. its key was revoked):
    a `failure` event with the error partial, then `done`, so the page shows the error and
    closes the stream. Sent with status 200, the only one EventSource reads; htmx's SSE
    extension reconnected forever to any other answer (the audit log keeps the real status)."""
    shown = for_caller(exc, request.get(REQUEST_PRINCIPAL))
    partial = await render_string(request, "_error.html", {"error": shown, "status": exc.status})
    return web.Response(
        body=sse_message("failure", partial) + sse_message("done", ""),
        content_type="text/event-stream",
        headers={**NO_STORE, **exc.headers()},
    )


def page_handler(handler: Handler) -> Handler:
    """Decorate a page handler so that its errors render as the error partial, in place."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except LollmsError as exc:
            return await render_error(request, exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return await render_error(request, from_http_exception(exc))
        except Exception:  # a bug of ours: logged, shown without internals
            log.exception("page %s %s failed", request.method, request.path)
            return await render_error(request, LollmsError("internal server error; see the log"))

    return wrapper
