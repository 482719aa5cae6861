"""Admin page slots (API keys, audit log) and the key-entry page.

The keys and audit pages are admin-only slots the security layer fills in. `/login` is the one
page a remote browser can open without a key: it checks the key and keeps it in the
`lollms_key` cookie (`KEY_COOKIE`): HttpOnly, SameSite=Strict, Path=/, Secure over HTTPS; the
auth middleware reads it like an `Authorization: Bearer` key. Local access (same machine, see
DESIGN.md §7) needs no key at all.
"""

from __future__ import annotations

from aiohttp import web

from ..errors import Unauthorized
from ..keys import KEYSTORE
from ..security.auth import KEY_COOKIE, requires
from .forms import LoginForm, read_action, read_page_form
from .render import page_handler, render, see_other

routes = web.RouteTableDef()


@routes.get("/admin/keys", name="admin_keys")
@requires("admin")
@page_handler
async def keys_page(request: web.Request) -> web.Response:
    """API keys (admin): the slot the security layer fills."""
    return await render(request, "keys.html", "_keys.html", {})


@routes.get("/admin/audit", name="admin_audit")
@requires("admin")
@page_handler
async def audit_page(request: web.Request) -> web.Response:
    """The audit log (admin): the slot the security layer fills."""
    return await render(request, "audit.html", "_audit.html", {})


@routes.get("/login", name="login")
@requires("public")
@page_handler
async def login_page(request: web.Request) -> web.Response:
    """Ask for a key once; it is kept in an HttpOnly cookie."""
    context = {"next": safe_next(request.query.get("next", "/"))}
    return await render(request, "login.html", "_login.html", context)


@routes.post("/login")
@requires("public")
@page_handler
async def login(request: web.Request) -> web.Response:
    """Check the key, keep it in the key cookie and go on (a plain form post, no htmx)."""
    form = await read_page_form(request, LoginForm)
    try:
        request.app[KEYSTORE].verify(form["key"].strip())
    except Unauthorized as exc:
        context = {"next": safe_next(form["next"]), "error": exc, "status": exc.status}
        return await render(request, "login.html", "_login.html", context, status=exc.status)
    response = see_other(safe_next(form["next"]))
    response.set_cookie(
        KEY_COOKIE,
        form["key"].strip(),
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )
    return response


@routes.post("/logout")
@requires("public")
@page_handler
async def logout(request: web.Request) -> web.Response:
    """Forget the key cookie."""
    await read_action(request)
    response = see_other("/login")
    response.del_cookie(KEY_COOKIE, path="/")
    return response


def safe_next(target: str) -> str:
    """A local path to go on to; anything else (another site, a scheme) becomes '/'."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
