"""Every page in a real browser: it opens, looks right, and logs no console error.

Also takes the 1280x800 screenshots shown in the README: set LOLLMS_SCREENSHOTS_DIR (for example
`docs/screenshots`) to write them there; otherwise they go to a temp folder.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import pytest

from lollms_server.builtin.echo import speak
from lollms_server.keys import KEYSTORE

PAGES = [
    ("/", "Dashboard"),
    ("/bindings", "Bindings"),
    ("/models", "Models"),
    ("/personalities", "Personalities"),
    ("/functions", "Functions"),
    ("/playground/chat", "Playground"),
    ("/playground/image", "Playground"),
    ("/playground/audio", "Playground"),
    ("/admin/keys", "API keys"),
    ("/admin/audit", "Audit log"),
    ("/login", "API key"),
    ("/logout", "Sign out"),
    ("/api-docs", "API docs"),
]


@pytest.mark.parametrize(("path", "heading"), PAGES)
def test_page_opens_without_console_errors(page: Any, path: str, heading: str) -> None:
    response = page.goto(path)
    assert response.status == 200
    assert page.locator("h1").first.inner_text() == heading
    assert page.evaluate("typeof htmx") == "object"
    assert page.evaluate("htmx.config.includeIndicatorStyles") is False
    page.wait_for_load_state("networkidle")


def test_theme_is_the_deep_blue_one(page: Any) -> None:
    page.goto("/")
    colours = page.evaluate(
        """() => ({
            body: getComputedStyle(document.body).backgroundColor,
            text: getComputedStyle(document.body).color,
            bar: getComputedStyle(document.querySelector('.topbar')).backgroundColor,
            radius: getComputedStyle(document.querySelector('.panel')).borderRadius,
        })"""
    )
    assert colours == {
        "body": "rgb(13, 20, 33)",
        "text": "rgb(255, 255, 255)",
        "bar": "rgb(26, 35, 126)",
        "radius": "0px",
    }


def test_phone_width_needs_no_sideways_scrolling(browser: Any, live_server: Any) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=live_server.url)
    page = context.new_page()
    try:
        for path in ("/", "/playground/chat", "/models"):
            page.goto(path)
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 1, f"{path} is {overflow}px wider than a phone"
    finally:
        context.close()


def test_dashboard_refreshes_itself(page: Any) -> None:
    page.goto("/")
    first = page.locator("[data-uptime]").get_attribute("data-uptime")
    page.wait_for_function(
        "first => document.querySelector('[data-uptime]').dataset.uptime !== first",
        arg=first,
        timeout=15_000,
    )
    assert page.locator("h1").count() == 1  # swapped in place, not a reload into itself
    assert page.locator("#gpus").inner_text().count("GPU") >= 1


def test_models_filter_is_debounced_and_kept_in_the_url(page: Any) -> None:
    page.goto("/models")
    everything = page.locator("#models tbody tr").count()
    page.fill("input[name=q]", "slow")
    page.wait_for_url(re.compile(r"/models\?q=slow"))
    page.wait_for_function(
        "n => document.querySelectorAll('#models tbody tr').length < n", arg=everything
    )
    names = page.locator("#models tbody tr td:first-child code").all_inner_texts()
    assert names and all(name.removesuffix(":latest").endswith("/slow") for name in names)
    page.select_option("select[name=type]", "tti")
    page.wait_for_function(
        "() => document.querySelectorAll('#models section.model-group').length === 1"
    )
    assert page.locator("#type-tti").count() == 1


def test_bindings_load_unload_and_health_check(page: Any) -> None:
    page.goto("/bindings")
    section = page.locator("#instance-echo")
    section.locator("button", has_text="Check health").click()
    page.wait_for_function("() => document.querySelector('#instance-echo .state').textContent")
    page.click("#instance-echo tr[data-model=think] button:has-text('Load')")
    page.wait_for_selector("#instance-echo .notice:has-text('loaded think')")
    assert "loaded" in page.locator("#instance-echo tr[data-model=think]").inner_text()
    page.click("#instance-echo tr[data-model=think] button:has-text('Unload')")
    page.wait_for_selector("#instance-echo .notice:has-text('unloaded think')")


def test_screenshots(page: Any, tmp_path: Path) -> None:
    target = Path(os.environ.get("LOLLMS_SCREENSHOTS_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(target / f"{name}.png"))

    page.goto("/bindings")
    page.click("#instance-echo tr[data-model=echo] button:has-text('Load')")
    page.wait_for_selector("#instance-echo .notice")
    for path, name in [
        ("/", "dashboard"),
        ("/bindings", "bindings"),
        ("/models", "models"),
        ("/functions", "functions"),
    ]:
        page.goto(path)
        shot(name)
    page.goto("/personalities")
    page.click("details summary:has-text('lollms')")
    shot("personalities")
    page.goto("/api-docs")
    page.click("#lollms_generate summary")
    page.locator("#lollms_generate").scroll_into_view_if_needed()
    shot("api-docs")
    page.goto("/playground/chat")
    page.select_option("#model", "echo/think")
    page.fill("textarea[name=prompt]", "Why is the sky blue?")
    page.click("#chat-form button[type=submit]")
    page.wait_for_selector(".turn-assistant .stream-done")
    page.select_option("#model", "echo/echo")
    page.fill("textarea[name=prompt]", "Tokens stream in live over SSE, <b>escaped</b>.")
    page.click("#chat-form button[type=submit]")
    page.wait_for_selector(".turn-assistant:nth-of-type(4) .stream-done")
    shot("chat")
    page.goto("/playground/image")
    page.fill("textarea[name=prompt]", "a lighthouse at dusk")
    page.fill("input[name=width]", "256")
    page.fill("input[name=height]", "160")
    page.fill("input[name=seed]", "4242")
    page.click("#image-form button[type=submit]")
    page.wait_for_selector("#image-result img")
    shot("image")
    page.goto("/playground/audio")
    page.fill("#speech-form textarea[name=text]", "hello world")
    page.click("#speech-form button[type=submit]")
    page.wait_for_selector("#speech-result audio")
    wav = tmp_path / "hello.wav"
    wav.write_bytes(speak("hello world"))
    page.set_input_files("#transcribe-form input[type=file]", str(wav))
    page.click("#transcribe-form button[type=submit]")
    page.wait_for_selector("#transcript-result .transcript")
    shot("audio")
    page.goto("/admin/keys")
    page.fill("input[name=name]", "laptop")
    page.click("form[action='/admin/keys'] button[type=submit]")
    page.wait_for_selector(".created-key")
    shot("keys")
    page.goto("/admin/audit")
    shot("audit")


def test_personalities_reload_button_and_welcome_message(page: Any) -> None:
    page.goto("/personalities")
    page.click("button:has-text('Reload personalities and functions')")
    page.wait_for_selector("#personalities .notice")
    assert "reloaded:" in page.locator("#personalities .notice").inner_text()
    icon = page.locator("summary:has-text('prompt_artist') img.icon")
    assert icon.evaluate("img => img.complete && img.naturalWidth > 0")
    page.goto("/playground/chat?personality=concise_assistant")
    assert "I keep my answers short" in page.locator("#welcome").inner_text()
    page.goto("/playground/chat")
    assert not page.locator("#welcome").is_visible()
    page.select_option("select[name=personality]", "concise_assistant")
    page.wait_for_selector("#welcome:has-text('I keep my answers short')")
    page.select_option("select[name=personality]", "")
    page.wait_for_selector("#welcome", state="hidden")


def test_sign_in_with_a_user_key_then_sign_out_from_the_nav(page: Any, live_server: Any) -> None:
    """A key kept by the browser is its caller, local or not: a user key's nav has no admin
    page and a Sign out button, which forgets the key (back to local access here)."""
    create = live_server.app[KEYSTORE].create("browser", "user")
    key, _ = asyncio.run_coroutine_threadsafe(create, live_server.loop).result(10)
    topbar = page.locator("header.topbar")
    page.goto("/login?next=/models")
    assert topbar.locator("a[href='/admin/keys']").count() == 1  # local access: admin
    page.fill("input[name=key]", key)
    page.click("form.login button[type=submit]")
    page.wait_for_url("**/models")
    assert topbar.locator("a[href='/admin/keys'], a[href='/admin/audit']").count() == 0
    topbar.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    assert topbar.get_by_role("button", name="Sign out").count() == 0
    assert topbar.locator("a[href='/admin/keys']").count() == 1


def test_pages_keep_no_copy_in_session_storage(page: Any) -> None:
    """Filtering the audit log pushes history entries; no copy of a page (the audit rows, a
    keys page) stays in the tab's sessionStorage, where it outlived Sign out (htmx's history
    cache held ~25 KB of the admin's audit page); going back asks the server again."""
    page.goto("/admin/audit")
    for event in ("auth_failed", "generation"):
        page.select_option("select[name=event]", event)
        page.click("#audit button[type=submit]")
        page.wait_for_url(re.compile(rf"event={event}"))
    stored = page.evaluate("JSON.stringify(Object.assign({}, sessionStorage))")
    assert "htmx-history-cache" not in stored and "topbar" not in stored, stored[:300]
    page.go_back()
    page.wait_for_url(re.compile(r"event=auth_failed"))
    page.wait_for_function(
        "() => document.querySelector('select[name=event]').value === 'auth_failed'"
    )
    assert page.locator("table.audit").count() == 1
