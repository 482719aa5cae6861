"""Admin pages (API keys, audit log), the key-entry page and the sign-out page.

The keys and audit pages are admin-only. `/login` is the page a remote browser can open
without a key (with `/logout`, whose sign-out button the nav also shows): it checks the key
and keeps it in the `lollms_key` cookie (`KEY_COOKIE`): HttpOnly, SameSite=Strict, Path=/,
Secure over HTTPS; the auth middleware reads it like an `Authorization: Bearer` key. Local
access (same machine, see DESIGN.md §7) needs no key at all.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .. import admin_actions
from ..errors import LollmsError, Unauthorized
from ..httpkit.endpoint import validate as validate_data
from ..keys import AUDIT, KEYSTORE, SECURITY
from ..security.auth import (
    KEY_COOKIE,
    audit_auth_failure,
    client_and_local,
    refuse_cross_site,
    requires,
)
from ..security.local import is_https
from .forms import AuditFilter, KeyForm, LoginForm, read_action, read_page_form
from .render import page_handler, render, see_other

routes = web.RouteTableDef()


def _names(value: str) -> list[str] | None:
    names = [v.strip() for v in value.split(",") if v.strip()]
    return names or None


async def _keys_view(request: web.Request, **extra: Any) -> web.Response:
    keys = [k.to_dict() for k in await request.app[KEYSTORE].list()]
    status = extra.pop("status", 200)
    context = {"keys": keys, "form": {}, **extra}
    return await render(request, "keys.html", "_keys.html", context, status=status)


@routes.get("/admin/keys", name="admin_keys")
@requires("admin")
@page_handler
async def keys_page(request: web.Request) -> web.Response:
    """API keys (admin): list, create (the secret is shown once), revoke."""
    return await _keys_view(request)


@routes.post("/admin/keys")
@requires("admin")
@page_handler
async def create_key(request: web.Request) -> web.Response:
    """Create a key; the page shows its secret this once (a refusal shows above the form,
    which keeps what was typed)."""
    form: dict[str, Any] = {}
    try:
        form = await read_page_form(request, KeyForm)
        key, record = await admin_actions.create_key(
            request,
            form["name"].strip(),
            form["role"],
            expires_in_days=form.get("expires_in_days"),
            allowed_bindings=_names(form["allowed_bindings"]),
            allowed_models=_names(form["allowed_models"]),
            rpm=form.get("rpm"),
            tpm=form.get("tpm"),
            max_concurrent=form.get("max_concurrent"),
        )
    except LollmsError as exc:
        return await _keys_view(request, failure=exc, form=form, status=exc.status)
    return await _keys_view(request, created={"key": key, **record.to_dict()}, status=201)


@routes.post("/admin/keys/{key_id}/revoke")
@requires("admin")
@page_handler
async def revoke_key(request: web.Request) -> web.Response:
    """Revoke a key."""
    await read_action(request)
    record = await admin_actions.revoke_key(request, request.match_info["key_id"])
    return await _keys_view(request, notice=f"revoked {record.id} ({record.name})")


@routes.get("/admin/audit", name="admin_audit")
@requires("admin")
@page_handler
async def audit_page(request: web.Request) -> web.Response:
    """The audit log (admin), newest first, filtered by event or key, 100 a page."""
    query = validate_data(AuditFilter, dict(request.query))
    events = await request.app[AUDIT].query(limit=100, **query)
    older = events[-1]["id"] if len(events) == 100 else None
    context = {"events": events, "filters": query, "older": older}
    return await render(request, "audit.html", "_audit.html", context)


@routes.get("/login", name="login")
@requires("public")
@page_handler
async def login_page(request: web.Request) -> web.Response:
    """Ask for a key once; it is kept in an HttpOnly cookie."""
    return await _login_view(request, request.query.get("next", "/"))


async def _login_view(request: web.Request, target: str, **extra: Any) -> web.Response:
    context = {"next": safe_next(target), "local_access": request.app[SECURITY].local_access}
    status = extra.get("status", 200)  # the error partial shows it too
    return await render(request, "login.html", "_login.html", {**context, **extra}, status=status)


@routes.post("/login")
@requires("public")
@page_handler
async def login(request: web.Request) -> web.Response:
    """Check the key, keep it in the key cookie and go on (a plain form post, no htmx)."""
    refuse_cross_site(request, "cross-site login refused")  # no logging a victim in as us
    form = await read_page_form(request, LoginForm)
    try:
        await request.app[KEYSTORE].verify(form["key"].strip())
    except Unauthorized as exc:  # a guessed key is audited like one sent to the API
        client, _ = client_and_local(request)
        await audit_auth_failure(request, exc, client, form["key"].strip())
        return await _login_view(request, form["next"], error=exc, status=exc.status)
    response = see_other(safe_next(form["next"]))
    response.set_cookie(
        KEY_COOKIE,
        form["key"].strip(),
        httponly=True,
        samesite="Strict",
        secure=is_https(request, request.app[SECURITY].trusted_proxies),
        path="/",
    )
    return response


@routes.get("/logout", name="logout")
@requires("public")
@page_handler
async def logout_page(request: web.Request) -> web.Response:
    """The sign-out button (a GET changes nothing: only the form's cross-site-checked POST
    forgets the key)."""
    return await render(request, "logout.html", "_logout.html", {})


@routes.post("/logout")
@requires("public")
@page_handler
async def logout(request: web.Request) -> web.Response:
    """Forget the key cookie."""
    refuse_cross_site(request, "cross-site logout refused")
    await read_action(request)
    response = see_other("/login")
    response.del_cookie(KEY_COOKIE, path="/")
    return response


def safe_next(target: str) -> str:
    """A path on this site to go on to; anything else becomes '/'.

    Browsers drop tabs and newlines from a Location and read a backslash as a slash, so only
    printable ASCII (also once percent-decoded), no backslash and no `//` start pass.
    """
    decoded = unquote(target)
    for text in (target, decoded):
        if not text.startswith("/") or text.startswith("//") or "\\" in text:
            return "/"
        if not all(" " < char < "\x7f" for char in text):
            return "/"
    return target
