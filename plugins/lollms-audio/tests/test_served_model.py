"""What served a speech or transcription request is what was asked, or a 404 naming what exists;
`X-Lollms-Model` (and the `model` field) names the model that served."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import FormData
from lollms_audio import AudioBinding

from lollms_server.keys import KEYSTORE
from lollms_server.testing import backend_unavailable, serve_binding

from .conftest import HELLO, VOICE, WHISPER, link_voice

Client = Any
MODEL = "X-Lollms-Model"


@pytest_asyncio.fixture
async def client(
    model_folders: dict[str, list[str]], packaged: None, tmp_path: Path
) -> AsyncIterator[Client]:
    """The app serving one `audio` instance, the default for tts and stt."""
    async with serve_binding(AudioBinding, "audio", model_folders, tmp_path / "data") as served:
        yield served


def upload(audio: bytes, model: str) -> FormData:
    """A transcription form for `model`."""
    form = FormData()
    form.add_field("model", model)
    form.add_field("file", audio, filename="speech.wav", content_type="audio/wav")
    return form


async def test_a_whisper_model_cannot_speak_nor_a_voice_transcribe(
    client: Client, say: Callable[[str], bytes]
) -> None:
    """Naming the other kind of model was served by the default one under the named one's
    name; it is a 404 in OpenAI's error shape that names the models of the right kind."""
    speech = await client.post(
        "/v1/audio/speech", json={"model": f"audio/{WHISPER}", "input": HELLO}
    )
    assert speech.status == 404, speech.headers
    error = (await speech.json())["error"]
    assert error["param"] == "model" and WHISPER in error["message"]
    assert VOICE in error["message"] and "voice" in error["message"]
    heard = await client.post("/v1/audio/transcriptions", data=upload(say(HELLO), f"audio/{VOICE}"))
    assert heard.status == 404, await heard.text()
    error = (await heard.json())["error"]
    assert error["param"] == "model" and WHISPER in error["message"]
    body = {
        "input_data": [{"type": "text", "role": "user_prompt", "data": HELLO}],
        "generation_type": "tts",
        "binding_name": "audio",
        "model_name": WHISPER,
    }
    lollms = await client.post("/api/v1/generate", json=body)
    assert lollms.status == 404, await lollms.text()


async def test_the_header_names_what_served(
    client: Client, say: Callable[[str], bytes], request: pytest.FixtureRequest
) -> None:
    """OpenAI ids and no model name the defaults; a `voice` naming another voice of ours
    speaks with it, and the header says so (it named the model of the request)."""
    plain = await client.post("/v1/audio/speech", json={"model": "tts-1", "input": HELLO})
    assert plain.status == 200 and plain.headers[MODEL] == f"audio/{VOICE}"
    heard = await client.post("/v1/audio/transcriptions", data=upload(say(HELLO), "whisper-1"))
    assert heard.status == 200 and heard.headers[MODEL] == f"audio/{WHISPER}"
    assert (await heard.json())["model"] == f"audio/{WHISPER}"
    if shutil.which("espeak-ng") is None:
        backend_unavailable(request, "espeak-ng is not on PATH (apt-get install espeak-ng)")
    for model in ("tts-1", f"audio/{VOICE}"):
        other = await client.post(
            "/v1/audio/speech", json={"model": model, "voice": "espeak-ng", "input": HELLO}
        )
        assert other.status == 200, await other.text()
        assert other.headers[MODEL] == "audio/espeak-ng", model
    form = {"text": HELLO, "model": f"audio/{VOICE}", "voice": "espeak-ng"}
    page = await client.post("/playground/speech", data=form, headers={"HX-Request": "true"})
    caption = (await page.text()).split("<figcaption>")[1]
    assert page.status == 200 and caption.startswith("audio/espeak-ng "), caption[:40]


async def test_a_limited_key_is_not_told_other_models(
    client: Client, say: Callable[[str], bytes]
) -> None:
    """A key allowed one voice that names it for stt gets a 404 naming no whisper model."""
    store = client.server.app[KEYSTORE]
    key, _ = await store.create("voice-only", "user", allowed_models=[f"audio/{VOICE}"])
    headers = {"X-API-Key": key, "Host": "evil.example"}
    heard = await client.post(
        "/v1/audio/transcriptions", data=upload(say(HELLO), f"audio/{VOICE}"), headers=headers
    )
    assert heard.status in (403, 404), await heard.text()
    assert WHISPER not in await heard.text()


async def test_a_voice_id_from_the_voice_listing_speaks(client: Client) -> None:
    """lollms-client lists voices as `<instance>/<model>` ids (GET /lollms/v1/audio/voices) and
    sends one back as `voice`: that was a 404 'no voice'; it names the model to speak with."""
    listed = await (await client.get("/lollms/v1/audio/voices")).json()
    ids = [voice["id"] for voice in listed["data"]]
    assert f"audio/{VOICE}" in ids, ids
    for route in ("/v1/audio/speech", "/lollms/v1/audio/speech"):
        for voice in ids:
            spoken = await client.post(route, json={"input": HELLO, "voice": voice})
            assert spoken.status == 200, (route, voice, await spoken.text())
            assert (await spoken.read())[:4] == b"RIFF"
            if route.startswith("/v1"):
                assert spoken.headers[MODEL] == voice


async def test_a_voice_naming_another_piper_voice_is_loaded_within_the_books(
    model_folders: dict[str, list[str]], packaged: None, tmp_path: Path
) -> None:
    """`voice` naming another Piper voice of the instance loaded it outside the lifecycle's
    books (the default voice was booked instead): /api/v1/status did not list it and no
    memory budget counted it. The voice is now the model that is loaded, booked and named."""
    folder = tmp_path / "tts"
    folder.mkdir()
    link_voice(folder, "second")  # a folder voice: listed first, so the default voice
    settings = {**model_folders, "tts_folders": [str(folder)]}
    async with serve_binding(AudioBinding, "audio", settings, tmp_path / "data") as served:
        for voice, model in ((VOICE, "tts-1"), ("second", f"audio/{VOICE}")):
            spoken = await served.post(
                "/v1/audio/speech", json={"model": model, "voice": voice, "input": HELLO}
            )
            assert spoken.status == 200 and spoken.headers[MODEL] == f"audio/{voice}"
            status = await (await served.get("/api/v1/status")).json()
            assert status["loaded"] == [f"audio/{voice}"], status["loaded"]
            await served.post("/api/v1/unload_model", json={"binding_name": "audio",
                                                             "model_name": voice})  # fmt: skip
        lollms = {
            "input_data": [{"type": "text", "role": "user_prompt", "data": HELLO}],
            "generation_type": "tts",
            "binding_name": "audio",
            "parameters": {"voice": VOICE},
        }
        answer = await served.post("/api/v1/generate", json=lollms)
        assert answer.status == 200, await answer.text()
        status = await (await served.get("/api/v1/status")).json()
        assert status["loaded"] == [f"audio/{VOICE}"], status["loaded"]


async def test_a_voice_error_names_only_the_voices_the_key_may_use(
    model_folders: dict[str, list[str]], packaged: None, tmp_path: Path
) -> None:
    """`no voice 'x'; voices: ...` listed every voice of the instance to a key allowed one."""
    folder = tmp_path / "tts"
    folder.mkdir()
    link_voice(folder, "second")
    settings = {**model_folders, "tts_folders": [str(folder)]}
    async with serve_binding(AudioBinding, "audio", settings, tmp_path / "data") as served:
        store = served.server.app[KEYSTORE]
        key, _ = await store.create("voice-only", "user", allowed_models=[f"audio/{VOICE}"])
        headers = {"X-API-Key": key, "Host": "evil.example"}
        body = {"model": f"audio/{VOICE}", "voice": "nosuch", "input": HELLO}
        limited = await served.post("/v1/audio/speech", json=body, headers=headers)
        message = (await limited.json())["error"]["message"]
        assert limited.status == 404, message
        assert "nosuch" in message and VOICE in message, message
        assert "second" not in message and "espeak" not in message, message
        everyone = await served.post("/v1/audio/speech", json=body)  # local: every model
        assert "second" in (await everyone.json())["error"]["message"]
