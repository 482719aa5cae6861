"""Model names that clients hard-code (`text-embedding-3-small`, `whisper-1`, `tts-1`,
`dall-e-3`, `gpt-4o-mini`, ...) reach the default model of the route's generation type when no
instance has that name, on every /v1 route, and the answer names the model that served (the
`model` field, or `X-Lollms-Model` on a binary body). The real OpenAI SDK against a real server
process."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from lollms_server.testing.process import lollms_process

CONFIG = """\
[bindings.echo]
type = "echo"

[defaults]
ttt = "echo/echo"
tti = "echo"
tts = "echo"
stt = "echo"
"""
SERVED = "echo/echo"


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    """The OpenAI SDK pointed at one server process for the module."""
    folder: Path = tmp_path_factory.mktemp("names")
    with (
        lollms_process(folder, CONFIG) as server,
        openai.OpenAI(
            base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60
        ) as client,
    ):
        yield client


@pytest.mark.parametrize(
    "name", ["text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"]
)
def test_embeddings(sdk: openai.OpenAI, name: str) -> None:
    answer = sdk.embeddings.create(model=name, input=["hello", "world"])
    assert answer.model == SERVED and len(answer.data) == 2


def test_chat_and_completions(sdk: openai.OpenAI) -> None:
    chat = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi there"}]
    )
    assert chat.model == SERVED and chat.choices[0].message.content == "hi there"
    text = sdk.completions.create(model="gpt-3.5-turbo", prompt="raw text")
    assert text.model == SERVED and text.choices[0].text == "raw text"


def test_images(sdk: openai.OpenAI) -> None:
    answer = sdk.images.generate(model="dall-e-3", prompt="a red square", size="64x64")
    assert answer.data and answer.data[0].b64_json
    assert (answer.model_extra or {}).get("model") == SERVED


def test_speech_then_transcription(sdk: openai.OpenAI) -> None:
    speech = sdk.audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input="hello", response_format="wav"
    )
    assert speech.headers["X-Lollms-Model"] == SERVED
    wav = speech.content
    assert wav[:4] == b"RIFF"
    raw = sdk.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("hello.wav", io.BytesIO(wav), "audio/wav")
    )
    assert raw.headers["X-Lollms-Model"] == SERVED
    transcription = raw.parse()
    assert (transcription.model_extra or {}).get("model") == SERVED


def test_a_name_outside_the_list_is_still_a_404(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(
            model="gpt-nonexistent-9", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.NotFoundError):
        sdk.embeddings.create(model="no-such-embedder", input="x")
