"""The admin pages: keys (create shows the secret once, revoke) and the audit log."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from lollms_server.keys import KEYSTORE

Client = TestClient[Any, Any]


async def test_create_list_and_revoke_keys(client: Client) -> None:
    page = await client.get("/admin/keys")
    assert page.status == 200 and "New key" in await page.text()
    created = await client.post(
        "/admin/keys",
        data={
            "name": "laptop",
            "role": "user",
            "allowed_models": "echo/echo, echo/slow",
            "rpm": "30",
        },
        headers={"HX-Request": "true"},
    )
    html = await created.text()
    assert created.status == 201 and "<html" not in html
    key = re.search(r"lollms_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", html)
    assert key is not None
    record = await client.server.app[KEYSTORE].verify(key.group(0))
    assert record.allowed_models == frozenset({"echo/echo", "echo/slow"}) and record.rpm == 30
    listing = await (await client.get("/admin/keys")).text()
    assert record.id in listing and key.group(0) not in listing  # the secret is shown once
    revoked = await client.post(f"/admin/keys/{record.id}/revoke")
    assert revoked.status == 200 and f"revoked {record.id}" in await revoked.text()
    assert (await client.server.app[KEYSTORE].get(record.id)).status() == "revoked"
    invalid = await client.post("/admin/keys", data={"name": " ", "role": "root"})
    assert invalid.status == 422


async def test_audit_page_lists_and_filters(client: Client) -> None:
    await client.get("/api/v1/list_models", headers={"Host": "evil.example"})
    answer = await client.post(
        "/api/v1/generate", json={"input_data": [{"type": "text", "data": "x"}]}
    )
    page = await (await client.get("/admin/audit")).text()
    assert "auth_failed" in page and "generation" in page
    assert answer.headers["X-Request-Id"] in page  # a generation row names its request
    only = await (await client.get("/admin/audit?event=auth_failed")).text()
    assert "audit-auth_failed" in only and "audit-generation" not in only
    bad = await client.get("/admin/audit?before_id=abc")
    assert bad.status == 422


async def test_admin_pages_need_admin(client: Client) -> None:
    user, _ = await client.server.app[KEYSTORE].create("u", "user")
    headers = {"Host": "evil.example", "X-API-Key": user}
    for path in ("/admin/keys", "/admin/audit"):
        response = await client.get(path, headers=headers, allow_redirects=False)
        assert response.status == 403
    post = await client.post("/admin/keys", data={"name": "x"}, headers=headers)
    assert post.status == 403


async def test_a_refused_key_shows_above_the_form_with_what_was_typed(client: Client) -> None:
    """A mistake (a model without its instance) keeps the table and the form, filled in, and
    says what is wrong above it (it replaced the whole keys area with the error before)."""
    typed = {"name": "app", "allowed_models": "echo", "rpm": "60"}
    for headers in ({"HX-Request": "true"}, {}):  # htmx, and a plain post without JavaScript
        refused = await client.post("/admin/keys", data=typed, headers=headers)
        html = await refused.text()
        assert refused.status == 400, html
        assert "allowed_models entries are `&lt;instance&gt;/&lt;model&gt;`" in html, html
        assert "Create key" in html and '<table class="dense keys">' in html
        assert 'name="name" required maxlength="128" value="app"' in html
        assert 'value="echo"' in html and 'value="60"' in html
    assert not await client.server.app[KEYSTORE].list()


async def test_a_new_key_and_every_page_are_never_stored(client: Client) -> None:
    """The page and the API answer that show a new key's secret, and every page (a view of
    what one key may see), say `Cache-Control: no-store` (they sent no cache header before,
    so a proxy or the browser's back button could keep the secret)."""
    for headers in ({"HX-Request": "true"}, {}):
        created = await client.post("/admin/keys", data={"name": "k"}, headers=headers)
        assert created.status == 201 and "lollms_" in await created.text()
        assert created.headers.get("Cache-Control") == "no-store"
    api = await client.post("/api/v1/keys", json={"name": "api", "role": "user"})
    assert api.status == 201 and api.headers.get("Cache-Control") == "no-store"
    for path in ("/", "/admin/keys", "/admin/audit", "/models", "/login", "/no-such-page"):
        page = await client.get(path)
        assert page.headers.get("Cache-Control") == "no-store", path


async def test_a_refused_login_is_an_audited_auth_failure(client: Client) -> None:
    """Keys guessed through the login form were never audited (an API call with the same key
    was): a guesser left no `auth_failed` row. Each refused login is now one, naming the
    existing key id it tried, like the API's."""
    admin, record = await client.server.app[KEYSTORE].create("a", "admin")
    wrong = admin[:-4] + ("AAAA" if not admin.endswith("AAAA") else "BBBB")
    for key in (wrong, "not-a-key"):
        refused = await client.post("/login", data={"key": key, "next": "/"})
        assert refused.status == 401 and key not in await refused.text()
    events = (await (await client.get("/api/v1/audit?event=auth_failed")).json())["events"]
    logins = [e for e in events if e["path"] == "/login"]
    assert [(e["status"], e["key_id"]) for e in logins] == [(401, None), (401, record.id)]
    assert all(wrong not in str(e) for e in events)
