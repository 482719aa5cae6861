"""The pages follow their caller: the nav by role, signing out, the key page's text, the
model pickers of a key with an allow-list, and each caller's own pending page streams."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from lollms_server.keys import KEYSTORE, WEB_STREAMS
from lollms_server.security.auth import declared_access
from lollms_server.web import admin, pages, streams
from lollms_server.web.render import NAV

Client = TestClient[Any, Any]
HX = {"HX-Request": "true"}
FOREIGN = {"Host": "evil.example"}  # not local: the key decides
HEADER = re.compile(r'<header class="topbar">.*?</header>', re.S)
STREAM_URL = re.compile(r'sse-connect="(/playground/streams/[^"]+)"')


def nav_of(html: str) -> str:
    match = HEADER.search(html)
    assert match, html
    return match.group(0)


async def key(client: Client, role: str = "user", **limits: Any) -> str:
    secret, _ = await client.app[KEYSTORE].create(role, role, **limits)  # type: ignore[arg-type]
    return secret


async def page(client: Client, path: str, secret: str | None = None) -> str:
    """The page as a remote caller with key `secret` sees it (local access without one)."""
    headers = {**FOREIGN, "X-API-Key": secret} if secret else {}
    return await (await client.get(path, headers=headers)).text()


def test_the_nav_declares_the_access_of_its_pages() -> None:
    """Each nav entry says who may open its page, and says it as the page's route does."""
    for href, _label, _prefix, access in NAV:
        route = next(
            r
            for r in pages.routes
            if getattr(r, "path", None) == href and r.method == "GET"  # type: ignore[attr-defined]
        )
        handler = route.handler  # type: ignore[attr-defined]
        assert declared_access(handler, None) == access, href


async def test_admin_entries_only_for_admins(client: Client) -> None:
    user, boss = await key(client), await key(client, "admin")
    admin_links = ["/admin/keys", "/admin/audit"]  # every admin page: see the test above
    seen = {
        "user": nav_of(await page(client, "/models", user)),
        "admin": nav_of(await page(client, "/models", boss)),
        "local": nav_of(await page(client, "/models")),
        "error page": nav_of(await page(client, "/admin/keys", user)),  # its 403
    }
    for href in admin_links:
        assert f'href="{href}"' not in seen["user"] and f'href="{href}"' not in seen["error page"]
        assert f'href="{href}"' in seen["admin"] and f'href="{href}"' in seen["local"]
    assert 'href="/playground/chat"' in seen["user"] and 'href="/models"' in seen["user"]


async def test_sign_out_in_the_nav_for_a_key_cookie(client: Client) -> None:
    user = await key(client)
    signed_in = await client.get("/models", headers=FOREIGN, cookies={"lollms_key": user})
    nav = nav_of(await signed_in.text())
    assert re.search(r'<form[^>]*method="post"[^>]*action="/logout"', nav), nav
    assert "Sign out" in nav
    assert "/logout" not in nav_of(await (await client.get("/models")).text())  # no key cookie
    # the nav's form posts like the key page's: refused from another site, fine from this one
    other = {**FOREIGN, "Origin": "http://other.example", "Content-Length": "0"}
    refused = await client.post("/logout", headers=other, allow_redirects=False)
    assert refused.status == 403 and "Set-Cookie" not in refused.headers
    same = {**FOREIGN, "Origin": "http://evil.example", "Content-Length": "0"}
    out = await client.post("/logout", headers=same, allow_redirects=False)
    assert out.status == 303 and 'lollms_key=""' in out.headers["Set-Cookie"]


async def test_get_logout_offers_the_button_and_changes_nothing(client: Client) -> None:
    user = await key(client)
    page = await client.get(
        "/logout", headers=FOREIGN, cookies={"lollms_key": user}, allow_redirects=False
    )
    html = await page.text()
    assert page.status == 200, html
    assert "Set-Cookie" not in page.headers  # a GET never signs out
    main = html.split("</header>", 1)[1]
    assert re.search(r'<form[^>]*method="post"[^>]*action="/logout"', main), main
    assert admin.logout_page.__lollms_access__ == "public"  # type: ignore[attr-defined]
    partial = await client.get("/logout", headers={**FOREIGN, **HX})
    assert partial.status == 200 and "<html" not in await partial.text()


async def test_key_page_text_follows_local_access(make_client: Any, make_config: Any) -> None:
    local_on = await make_client()
    text = await (await local_on.get("/login", headers=FOREIGN)).text()
    assert "from another machine" in text
    config = make_config()
    config.security.local_access = False
    local_off = await make_client(config)
    text = await (await local_off.get("/login")).text()
    assert "from another machine" not in text
    assert "this one included" in text


def first_option(html: str, select_id: str) -> tuple[str, bool]:
    """The value of the first option of a select, and whether a "default" option is offered."""
    match = re.search(rf'<select name="model" id="{select_id}">(.*?)</select>', html, re.S)
    assert match, html
    options = re.findall(r'<option value="([^"]*)"', match.group(1))
    return options[0], "" in options


PICKERS = {
    "/playground/chat": ("model",),
    "/playground/image": ("model",),
    "/playground/audio": ("tts-model", "stt-model"),
}


async def test_a_limited_key_gets_a_model_it_may_use(client: Client) -> None:
    limited = await key(client, allowed_models=["echo/think"])
    allowed_default = await key(client, allowed_models=["echo/think", "echo/echo"])
    for path, selects in PICKERS.items():
        html = await page(client, path, limited)
        for select in selects:
            assert first_option(html, select) == ("echo/think", False), (path, select)
        for caller in (allowed_default, None):  # None: local access
            html = await page(client, path, caller)
            for select in selects:
                assert first_option(html, select) == ("", True), (path, select)
    model, _ = first_option(await page(client, "/playground/chat", limited), "model")
    sent = await client.post(
        "/playground/chat",
        data={"prompt": "hi", "model": model},
        headers={**FOREIGN, "X-API-Key": limited, **HX},
    )
    assert sent.status == 200, await sent.text()


async def test_a_flood_evicts_only_the_flooders_streams(client: Client) -> None:
    """One key posting many playground requests cannot expire another caller's stream."""
    client.app[WEB_STREAMS].max_pending = 4  # the global bound, reached by one key alone
    patient, flooder = await key(client), await key(client)

    async def start(secret: str) -> str:
        headers = {**FOREIGN, "X-API-Key": secret, **HX}
        response = await client.post("/playground/chat", data={"prompt": "hi"}, headers=headers)
        match = STREAM_URL.search(await response.text())
        assert match
        return match.group(1)

    mine = await start(patient)
    for _ in range(6):
        await start(flooder)
    reply = await client.get(mine, headers={**FOREIGN, "X-API-Key": patient})
    body = await reply.text()
    assert "event: done" in body and "finished or expired" not in body, body


async def test_revoking_a_key_ends_its_open_page_stream(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A playground answer streaming to a key that is then revoked stops within a key check
    and says why (it streamed to the end before: up to request_timeout_s of generation)."""
    monkeypatch.setattr(streams, "KEY_CHECK_S", 0.05)
    secret = await key(client)
    headers = {**FOREIGN, "X-API-Key": secret}
    words = " ".join(f"w{i}" for i in range(400))  # echo/slow: 400 tokens, 50 ms apart
    sent = await client.post(
        "/playground/chat", data={"prompt": words, "model": "echo/slow"}, headers={**headers, **HX}
    )
    match = STREAM_URL.search(await sent.text())
    assert match
    started = time.monotonic()
    reply = await client.get(match.group(1), headers=headers)
    assert b"event: token" in await reply.content.readuntil(b"\n\n")
    await client.app[KEYSTORE].revoke(secret.split("_")[1])
    body = (await asyncio.wait_for(reply.text(), 5)).split("event: failure", 1)
    assert len(body) == 2, body[0][-300:]
    assert "revoked" in body[1] and "event: done" in body[1] and "event: token" not in body[1]
    assert time.monotonic() - started < 5  # the whole answer takes 20 s


async def test_pending_streams_are_bounded_in_bytes(client: Client) -> None:
    """A key's pending page streams hold at most `max_pending_bytes_per_caller` of prompts and
    uploads, and all callers `max_pending_bytes` (each held up to 64 MB of upload for 2 minutes
    before: 32 image posts of one user key pinned ~2 GB, measured 50 MB per post)."""
    registry = client.app[WEB_STREAMS]
    registry.max_pending_bytes_per_caller, registry.max_pending_bytes = 3_000_000, 5_000_000
    users = [await key(client) for _ in range(3)]

    async def start(secret: str, turns: int = 1) -> str:
        """A chat post with `turns` earlier turns of 1 MB each; its stream's URL."""
        form = [("prompt", "hi")] + [
            ("history_role", "user"),
            ("history_text", "x" * 10**6),
        ] * turns
        headers = {**FOREIGN, "X-API-Key": secret, **HX}
        response = await client.post("/playground/chat", data=form, headers=headers)
        match = STREAM_URL.search(await response.text())
        assert response.status == 200 and match
        return match.group(1)

    for _ in range(5):
        await start(users[0])
    assert registry.pending_bytes() <= 3_000_000 + 10_000  # the key's oldest went first
    for secret in users[1:]:
        for _ in range(3):
            await start(secret)
    assert registry.pending_bytes() <= 5_000_000 + 10_000
    alone = await start(users[0], turns=4)  # more than a caller's share: it runs, alone
    reply = await client.get(alone, headers={**FOREIGN, "X-API-Key": users[0]})
    assert "event: done" in (body := await reply.text()) and "expired" not in body


async def test_a_refused_stream_tells_its_page_and_closes(client: Client) -> None:
    """The playground's EventSource, refused (its key revoked or forgotten before it
    connected), gets the error as a `failure` event and then `done`: the page shows it and
    closes. It got a redirect to /login before, which htmx's SSE reconnected to forever while
    the page said "generating…" (5 requests in 12 s in Chromium, then one a minute)."""
    secret = await key(client)
    headers = {**FOREIGN, "X-API-Key": secret, **HX}
    sent = await client.post("/playground/chat", data={"prompt": "hi"}, headers=headers)
    match = STREAM_URL.search(await sent.text())
    assert match
    await client.app[KEYSTORE].revoke(secret.split("_")[1])
    events = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    for caller in ({"X-API-Key": secret}, {}):  # revoked key, and no key at all
        reply = await client.get(
            match.group(1), headers={**FOREIGN, **events, **caller}, allow_redirects=False
        )
        body = await reply.text()
        assert reply.status == 200 and reply.content_type == "text/event-stream", body
        assert body.index("event: failure") < body.index("event: done"), body
        assert 'data-status="401"' in body and reply.headers["Cache-Control"] == "no-store"
    page = await client.get("/models", headers=FOREIGN, allow_redirects=False)
    assert page.status == 303  # a page itself still goes to the login page
