"""The playground in a real browser: streamed chat with Stop, images, speech, transcription."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from lollms_server.builtin.echo import speak

LONG_PROMPT = " ".join(f"word{i}" for i in range(60))


def send_chat(page: Any, model: str, prompt: str) -> None:
    page.select_option("#model", model)
    page.fill("textarea[name=prompt]", prompt)
    page.click("#chat-form button[type=submit]")


def test_chat_streams_tokens_live_and_stop_cancels_on_the_server(
    page: Any, live_server: Any
) -> None:
    recorder = live_server.recorder
    before = len(recorder.streams)
    page.goto("/playground/chat")
    send_chat(page, "rec/slow", LONG_PROMPT)  # 60 tokens, 150 ms apart
    answer = page.locator(".turn-assistant .text")
    page.wait_for_function(
        "() => document.querySelector('.turn-assistant .text').textContent.includes('word2')"
    )
    first = answer.text_content()
    page.wait_for_function(
        "n => document.querySelector('.turn-assistant .text').textContent.length > n",
        arg=len(first),
    )
    assert page.input_value("textarea[name=prompt]") == ""  # cleared after sending
    page.click(".turn-assistant button.stop")
    page.wait_for_selector(".turn-assistant .stream-done")
    assert "stopped" in page.locator(".turn-assistant .stream-done").inner_text()
    stopped_at = answer.text_content()
    assert "word59" not in stopped_at
    time.sleep(0.6)  # a stream that kept running would add four more tokens meanwhile
    assert answer.text_content() == stopped_at
    record = recorder.streams[before]
    assert record.closed and not record.finished  # the binding's stream was closed early
    assert 0 < record.yielded < 60
    assert page.locator(".turn-assistant button.stop").count() == 0
    # the partial answer joined the conversation history for the next turn
    history = page.locator("input[name=history_text]").evaluate_all("els => els.map(e => e.value)")
    assert history == [LONG_PROMPT, stopped_at]


def test_chat_think_is_collapsed_tokens_are_escaped_and_history_grows(page: Any) -> None:
    page.goto("/playground/chat")
    send_chat(page, "echo/think", "<b>hi</b> & bye")
    page.wait_for_selector(".turn-assistant .stream-done")
    thoughts = page.locator(".turn-assistant details.thoughts")
    assert thoughts.is_visible()
    assert thoughts.get_attribute("open") is None
    assert "The user said" in thoughts.text_content()
    text = page.locator(".turn-assistant .text")
    assert text.text_content() == "<b>hi</b> & bye"
    assert page.locator(".turn-assistant .text b").count() == 0
    send_chat(page, "echo/echo", "second")
    page.wait_for_selector(".turn-assistant >> nth=1 >> .stream-done")
    roles = page.locator("input[name=history_role]").evaluate_all("els => els.map(e => e.value)")
    assert roles == ["user", "assistant", "user", "assistant"]
    assert page.locator(".turn-assistant >> nth=1 >> details.thoughts").is_hidden()


def test_chat_personality_and_parameters_reach_the_binding(page: Any) -> None:
    page.goto("/playground/chat?personality=coder")
    assert page.input_value("select[name=personality]") == "coder"
    page.click("details.params summary")
    page.fill("input[name=max_tokens]", "3")
    send_chat(page, "echo/echo", "one two three four five ### six")
    page.wait_for_selector(".turn-assistant .stream-done")
    assert page.locator(".turn-assistant .text").text_content() == "one two three"
    assert "length" in page.locator(".turn-assistant .stream-done").inner_text()


def test_chat_backend_error_shows_in_place(page: Any) -> None:
    page.goto("/playground/chat")
    send_chat(page, "echo/fail", "boom now")
    error = page.locator(".turn-assistant .error")
    error.wait_for()
    assert "fails on purpose" in error.inner_text()
    assert "503" in error.inner_text()
    assert page.locator(".turn-assistant .text").text_content() == "boom"
    assert "failed" in page.locator(".turn-assistant .stream-done").inner_text()


def test_image_shows_progress_then_the_image_with_a_download_link(page: Any) -> None:
    page.goto("/playground/image")
    page.select_option("#model", "rec/echo")
    page.fill("textarea[name=prompt]", "a red square")
    page.fill("input[name=width]", "48")
    page.fill("input[name=height]", "32")
    page.click("#image-form button[type=submit]")
    page.wait_for_selector("#image-result progress[max='3']")  # the binding's own progress
    assert "step" in page.locator("#image-result .progress").inner_text()
    image = page.locator("#image-result img")
    image.wait_for()
    size = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert size == [48, 32]
    link = page.locator("#image-result a[download]")
    assert link.get_attribute("href").startswith("data:image/png;base64,")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename.endswith(".png")
    assert page.locator("#image-result progress").count() == 0


def test_image_to_image_with_an_uploaded_image(page: Any, tmp_path: Path) -> None:
    page.goto("/playground/image")
    page.fill("textarea[name=prompt]", "a source")
    page.click("#image-form button[type=submit]")
    href = page.locator("#image-result a[download]").get_attribute("href")
    source = tmp_path / "source.png"
    source.write_bytes(base64.b64decode(href.split(",", 1)[1]))
    page.set_input_files("input[name=image]", str(source))
    page.fill("textarea[name=prompt]", "now blue")
    page.click("#image-form button[type=submit]")
    page.wait_for_selector("#image-result a[download*='i2i']")
    assert page.locator("#image-result img").count() == 1


def test_speech_plays_and_transcription_reads_an_upload(page: Any, tmp_path: Path) -> None:
    page.goto("/playground/audio")
    page.fill("#speech-form textarea[name=text]", "hello there")
    page.click("#speech-form button[type=submit]")
    audio = page.locator("#speech-result audio")
    audio.wait_for()
    assert audio.get_attribute("src").startswith("data:audio/wav;base64,")
    page.wait_for_function("() => document.querySelector('#speech-result audio').duration > 0")
    wav = tmp_path / "hello.wav"
    wav.write_bytes(speak("hello world"))
    page.set_input_files("#transcribe-form input[type=file]", str(wav))
    page.click("#transcribe-form button[type=submit]")
    transcript = page.locator("#transcript-result .transcript")
    transcript.wait_for()
    assert transcript.inner_text() == "hello world"


def test_upload_error_shows_the_servers_message_in_place(
    page: Any, console: Any, tmp_path: Path
) -> None:
    page.goto("/playground/audio")
    bogus = tmp_path / "notes.txt"
    bogus.write_text("this is not audio")
    page.set_input_files("#transcribe-form input[type=file]", str(bogus))
    page.click("#transcribe-form button[type=submit]")
    error = page.locator("#transcript-result .error")
    error.wait_for()
    assert "415" in error.inner_text() and "WAV" in error.inner_text()
    assert page.locator("#transcribe-form").is_visible()  # the form stays usable
    # chromium itself logs the 415 response; nothing else may appear
    console.errors[:] = [e for e in console.errors if "status of 415" not in e]


def test_forms_work_without_javascript(browser: Any, live_server: Any) -> None:
    context = browser.new_context(java_script_enabled=False, base_url=live_server.url)
    page = context.new_page()
    try:
        page.goto("/playground/chat")
        page.select_option("#model", "echo/think")
        page.fill("textarea[name=prompt]", "no script here")
        page.click("#chat-form button[type=submit]")
        page.wait_for_url("**/playground/chat")
        assert page.locator(".turn-assistant .text").text_content() == "no script here"
        assert page.locator(".turn-assistant details.thoughts").count() == 1
        page.fill("textarea[name=prompt]", "and again")
        page.click("#chat-form button[type=submit]")
        assert page.locator(".turn").count() == 4
        page.goto("/playground/image")
        page.fill("textarea[name=prompt]", "static")
        page.click("#image-form button[type=submit]")
        assert page.locator("#image-result img").count() == 1
        page.goto("/models?q=think")
        assert page.locator("#models tbody tr").count() > 0
        page.goto("/bindings")
        page.click("#instance-echo tr[data-model=slow] button:has-text('Load')")
        page.wait_for_url("**/bindings")
        assert "loaded" in page.locator("#instance-echo tr[data-model=slow]").inner_text()
        page.click("#instance-echo tr[data-model=slow] button:has-text('Unload')")
    finally:
        context.close()
