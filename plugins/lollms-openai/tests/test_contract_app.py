"""The openai binding inside lollms-server, driven by the real openai SDK and raw HTTP."""

from __future__ import annotations

import base64
import io
import logging
import socket
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lollms_openai import OpenAIBinding
from openai import AsyncOpenAI

from lollms_server.bindings import ChatMessage, GenerationRequest
from lollms_server.builtin.echo import speak
from lollms_server.errors import LollmsError, ModelNotFound
from lollms_server.testing import serve_binding, started_binding, within
from lollms_server.testing.server import Client

from .conftest import ECHO, SMOL, TINY, Remote

TIMEOUT = 60.0


@pytest.fixture
def app_on(tmp_path: Path) -> Any:
    """Serve an openai instance called `remote` with the given settings."""

    def serve(settings: dict[str, Any]) -> Any:
        return serve_binding(OpenAIBinding, "remote", settings, tmp_path / "data")

    return serve


def sdk_of(client: Client) -> AsyncOpenAI:
    """The openai SDK pointed at the app's /v1 face."""
    return AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="x", max_retries=0)


async def test_sdk_chats_with_smollm2(app_on: Any, smol: Remote) -> None:
    """Non-streamed and streamed chat (with usage) through the binding and llama.cpp."""
    async with app_on(smol.settings()) as client:
        sdk = sdk_of(client)
        model = f"remote/{SMOL}"
        messages: Any = [{"role": "user", "content": "What is the capital of France?"}]
        answer = await within(
            TIMEOUT,
            sdk.chat.completions.create(model=model, messages=messages, max_tokens=24),
            "chat",
        )
        assert answer.model == model
        assert answer.choices[0].message.content and answer.choices[0].message.content.strip()
        assert answer.usage is not None and answer.usage.prompt_tokens > 5
        stream = await sdk.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces: list[str] = []
        usage = None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        assert len(pieces) >= 2 and "".join(pieces).strip()
        assert usage is not None and usage.completion_tokens >= 1
        await sdk.close()


async def test_stream_usage_and_length_pass_through(request: Any, tiny: Remote) -> None:
    """The tiny model always runs to max_tokens: finish `length`, usage exact, in a stream."""
    async with started_binding(OpenAIBinding, "remote", tiny.settings(), request=request) as b:
        ask = GenerationRequest(
            "ttt", TINY, (ChatMessage("user", "hi"),), parameters={"max_tokens": 7}
        )
        chunks = [chunk async for chunk in b.stream(ask)]
        assert chunks[-1].finish_reason == "length"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7
        assert sum(1 for c in chunks if c.content) >= 2
        raw = GenerationRequest(
            "ttt",
            TINY,
            (ChatMessage("user", "Once upon"),),
            parameters={"max_tokens": 3},
            raw_prompt=True,
        )
        result = await b.generate(raw)
        assert result.usage is not None and result.usage.completion_tokens == 3


async def test_unknown_and_disallowed_models(request: Any, smol: Remote) -> None:
    """A name the server does not list, or outside the allow-list, is a 404 without generating."""
    settings = smol.settings(models=[SMOL])
    async with started_binding(OpenAIBinding, "remote", settings, request=request) as binding:
        assert [m.name for m in await binding.list_models()] == [SMOL]
        ask = GenerationRequest("ttt", "gpt-4o", (ChatMessage("user", "hi"),))
        with pytest.raises(ModelNotFound, match="gpt-4o"):
            await binding.generate(ask)


async def test_media_through_two_lollms_servers(app_on: Any, lollms_backend: Remote) -> None:
    """SDK -> lollms-server -> openai binding -> another lollms-server: images, audio, vectors."""
    async with app_on(lollms_backend.settings()) as client:
        sdk = sdk_of(client)
        model = f"remote/{ECHO}"
        image = await sdk.images.generate(model=model, prompt="a red dot", size="32x32")
        png = base64.b64decode(image.data[0].b64_json or "")
        assert png.startswith(b"\x89PNG") and png[16:24] == (32).to_bytes(4, "big") * 2
        edited = await sdk.images.edit(
            model=model, image=("in.png", png, "image/png"), prompt="bluer", size="16x16"
        )
        assert base64.b64decode(edited.data[0].b64_json or "").startswith(b"\x89PNG")
        speech = await sdk.audio.speech.create(
            model=model, voice="alloy", input="hi there", response_format="wav"
        )
        with wave.open(io.BytesIO(speech.content)) as reader:
            assert reader.getnframes() > 0
        heard = await sdk.audio.transcriptions.create(
            model=model, file=("hello.wav", speak("hello world"), "audio/wav")
        )
        assert heard.text == "hello world"
        vectors = await sdk.embeddings.create(model=model, input=["a", "b"])
        assert len(vectors.data) == 2 and vectors.data[0].embedding != vectors.data[1].embedding
        await sdk.close()


async def test_key_never_shown(app_on: Any, smol: Remote, caplog: pytest.LogCaptureFixture) -> None:
    """The configured key is masked in list_bindings and pages, absent from every log line."""
    assert smol.api_key
    caplog.set_level(logging.DEBUG)
    async with app_on(smol.settings()) as client:
        bindings = await client.get("/api/v1/list_bindings")
        text = await bindings.text()
        assert bindings.status == 200 and smol.api_key not in text
        assert (await bindings.json())["binding_instances"]["remote"]["settings"][
            "api_key"
        ] == "***"
        body = {
            "input_data": [{"type": "text", "role": "user_prompt", "data": "Hi"}],
            "binding_name": "remote",
            "model_name": SMOL,
            "parameters": {"max_tokens": 4},
        }
        generated = await client.post("/api/v1/generate", json=body)
        assert generated.status == 200, await generated.text()
        for page in ("/", "/bindings"):
            response = await client.get(page)
            assert smol.api_key not in await response.text(), page
    assert smol.api_key not in caplog.text


async def test_wrong_key_is_a_502_without_the_key(
    app_on: Any, smol: Remote, caplog: pytest.LogCaptureFixture
) -> None:
    """The server refuses a wrong key: health down, generate 502 naming the instance; no key."""
    wrong = "sk-wrong-key-0123456789abcdef"
    caplog.set_level(logging.DEBUG)
    settings = smol.settings(api_key=wrong)
    async with app_on(settings) as client:
        active = await (await client.get("/api/v1/list_active_bindings")).json()
        assert active["bindings"]["remote"]["health"]["state"] == "down"
        body = {
            "input_data": [{"type": "text", "role": "user_prompt", "data": "Hi"}],
            "binding_name": "remote",
            "model_name": SMOL,
        }
        response = await client.post("/api/v1/generate", json=body)
        text = await response.text()
        assert response.status == 502, text
        assert (await response.json())["error"]["binding"] == "remote"
        assert wrong not in text and "credentials" in text
    assert wrong not in caplog.text


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


async def test_silent_backend_never_hangs(request: Any, black_hole: str) -> None:
    """A server that never answers: health down and generate fails, each within its timeout."""
    settings = {
        "base_url": black_hole,
        "health_timeout_s": 1.0,
        "read_timeout_s": 1.0,
        "check_models": False,
    }
    async with started_binding(
        OpenAIBinding, "remote", settings, request=request, expect_down=True
    ) as binding:
        started = time.monotonic()
        health = await within(5, binding.health(), "health")
        assert health.state == "down" and time.monotonic() - started < 3
        started = time.monotonic()
        with pytest.raises(LollmsError) as caught:
            ask = GenerationRequest("ttt", "m", (ChatMessage("user", "hi"),))
            await within(10, binding.generate(ask), "generate")
        assert caught.value.status == 504 and caught.value.binding == "remote"
        assert time.monotonic() - started < 5
