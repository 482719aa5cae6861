"""Every page with real backends configured next to echo, and one real generation of each kind.

The instances come from backends.py (llama.cpp with SmolLM2, an OpenAI-compatible llama.cpp
server, Piper + faster-whisper, a tiny Stable Diffusion, a second server's Ollama face). Their
model listings carry real, binding-specific details (GGUF headers, pipeline configs, voices):
the pages must render them all, show each instance up, and never show a secret.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from .backends import (
    REAL,
    SMOLLM2,
    TINY_CONTROL,
    TINY_LORA,
    TINY_SD,
    TINY_UPSCALER,
    VOICE,
    WHISPER,
)
from .test_browser_pages import PAGES

PAGE_PATHS = [path for path, _ in PAGES if path != "/login"]


def test_every_page_renders_the_real_instances(page: Any, live_server: Any) -> None:
    """Each page answers 200 with no console error, and no page shows a backend's key."""
    for path in PAGE_PATHS:
        response = page.goto(path)
        assert response.status == 200, f"{path}: {response.status}"
        page.wait_for_load_state("networkidle")
        html = page.content()
        for secret in live_server.real.secrets:
            assert secret not in html, f"{path} shows a backend's API key"


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_instance_is_up_with_its_models_listed(
    page: Any, real_instance: Any, name: str
) -> None:
    """The instance is up on /bindings and its model is listed on /bindings and /models."""
    instance = real_instance(name)
    model = REAL[name][1]
    page.goto("/bindings")
    section = page.locator(f"#instance-{instance}")
    assert section.locator(".state").first.inner_text() == "up", section.inner_text()
    assert section.locator(f"tr[data-model^='{model}']").count() >= 1, section.inner_text()
    page.goto(f"/models?q={instance}")
    ids = page.locator("#models tbody tr td:first-child code").all_inner_texts()
    assert any(i.startswith(f"{instance}/{model}") for i in ids), ids
    page.goto("/")
    assert "up" in page.locator(f"tr:has(a[href='/bindings#instance-{instance}'])").inner_text()


def chat(page: Any, model: str, prompt: str) -> str:
    """One chat turn in the playground with at most 8 tokens; the answer's text."""
    page.goto("/playground/chat")
    page.select_option("#model", model)
    page.click("details.params summary")
    page.fill("input[name=max_tokens]", "8")
    page.fill("textarea[name=prompt]", prompt)
    page.click("#chat-form button[type=submit]")
    done = page.locator(".turn-assistant .stream-done")
    done.wait_for(timeout=120_000)
    assert page.locator(".turn-assistant .error").count() == 0, done.inner_text()
    return str(page.locator(".turn-assistant .text").text_content())


@pytest.mark.parametrize("name", ["llama", "remote", "ollama"])
def test_chat_streams_from_a_real_text_backend(page: Any, real_instance: Any, name: str) -> None:
    """A streamed chat answer from llama.cpp, the OpenAI binding and the Ollama binding."""
    instance = real_instance(name)
    page.goto("/playground/chat")
    model = page.locator(f"#model option[value^='{instance}/']").first.get_attribute("value")
    if name == "llama":
        assert model == f"{instance}/{SMOLLM2}"
    answer = chat(page, model, "Say hello.")
    assert answer.strip(), f"{model} answered nothing"


def test_tiny_stable_diffusion_draws_in_the_playground(page: Any, real_instance: Any) -> None:
    """A 64x64 image from the tiny pipeline, shown with its download link."""
    instance = real_instance("images")
    page.goto("/playground/image")
    page.select_option("#model", f"{instance}/{TINY_SD}")
    page.fill("textarea[name=prompt]", "a red circle")
    page.fill("input[name=width]", "64")
    page.fill("input[name=height]", "64")
    page.fill("input[name=seed]", "7")
    image = page.locator("#image-result img")
    page.click("#image-form button[type=submit]")
    image.wait_for(timeout=120_000)
    assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [64, 64]


def test_image_workflows_from_the_playground_controls(
    page: Any, real_instance: Any, console: Any, tmp_path: Path
) -> None:
    """LoRAs with scales, a ControlNet with its control image, a style image, then upscaling:
    each drawn by the tiny pipelines; a malformed LoRA list shows the field's error."""
    instance = real_instance("images")

    def draw(model: str, **fields: str) -> tuple[list[int], str]:
        page.goto("/playground/image")
        page.select_option("#model", f"{instance}/{model}")
        page.fill("textarea[name=prompt]", "a red circle")
        for name, value in fields.items():
            if name.endswith("image"):
                page.set_input_files(f"input[name={name}]", value)
            else:
                page.fill(f"input[name={name}]", value)
        page.click("#image-form button[type=submit]")
        image = page.locator("#image-result img")
        image.wait_for(timeout=120_000)
        size = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        return size, str(image.get_attribute("src"))

    size, plain = draw(TINY_SD, width="64", height="64", seed="7")
    source = tmp_path / "source.png"
    source.write_bytes(base64.b64decode(plain.partition(",")[2]))
    steered = {"control_image": str(source), "controlnet": TINY_CONTROL, "control_scale": "0.8"}
    size, styled = draw(
        TINY_SD,
        width="64",
        height="64",
        seed="7",
        loras=f"{TINY_LORA}:0.7",
        style_image=str(source),
        **steered,
    )
    assert size == [64, 64] and styled != plain
    assert draw(TINY_UPSCALER, image=str(source), upscale="4", seed="1")[0] == [256, 256]
    page.goto("/playground/image")
    page.fill("textarea[name=prompt]", "a red circle")
    page.fill("input[name=loras]", f"{TINY_LORA}:lots")
    page.click("#image-form button[type=submit]")
    error = page.locator("#image-result .error")
    error.wait_for()
    assert "loras" in error.inner_text() and "lots" in error.inner_text(), error.inner_text()
    console.errors[:] = [e for e in console.errors if "status of 422" not in e]


def test_piper_speech_comes_back_through_whisper(
    page: Any, real_instance: Any, tmp_path: Path
) -> None:
    """Piper speaks in the playground; its WAV, uploaded, is transcribed by whisper tiny.en."""
    instance = real_instance("speech")
    page.goto("/playground/audio")
    page.select_option("#tts-model", f"{instance}/{VOICE}")
    page.fill("#speech-form textarea[name=text]", "hello world")
    page.click("#speech-form button[type=submit]")
    link = page.locator("#speech-result a[download]")
    link.wait_for(timeout=120_000)
    href = str(link.get_attribute("href"))
    wav = tmp_path / "spoken.wav"
    wav.write_bytes(base64.b64decode(href.split(",", 1)[1]))
    page.select_option("#stt-model", f"{instance}/{WHISPER}")
    page.set_input_files("#transcribe-form input[type=file]", str(wav))
    page.click("#transcribe-form button[type=submit]")
    transcript = page.locator("#transcript-result .transcript")
    transcript.wait_for(timeout=120_000)
    assert "hello" in transcript.inner_text().lower()
