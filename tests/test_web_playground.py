"""Playground handlers: chat over SSE with Stop, images, speech, transcription, 422 partials."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from lollms_server.bindings import Chunk, GenerationRequest
from lollms_server.builtin.echo import EchoBinding, speak
from lollms_server.keys import REGISTRY, WEB_STREAMS
from lollms_server.plugins import load_plugins
from lollms_server.testing.server import KitPlugin

HX = {"HX-Request": "true"}
STREAM_URL = re.compile(r'sse-connect="(/playground/streams/[^"]+)"')
STOP_URL = re.compile(r'hx-post="(/playground/streams/[^"]+/stop)"')


class RecordingBinding(EchoBinding):
    """Echo whose streams record how far they got and whether they were closed."""

    name = "recording"

    def __init__(self, instance_name: str, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(instance_name, config, **kwargs)
        self.yielded = 0
        self.closed = asyncio.Event()
        self.finished = False

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        try:
            async for chunk in super().stream(request):
                self.yielded += 1
                yield chunk
            self.finished = True
        finally:
            self.closed.set()


def parse_sse(text: str) -> list[tuple[str, str]]:
    """(event, data) pairs of a named-event SSE body; data lines joined with newlines."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        events.append((name, "\n".join(data)))
    return events


@pytest.fixture
async def rec_client(make_client: Any, make_config: Any) -> TestClient[Any, Any]:
    config = make_config(
        {
            "bindings": {
                "echo": {"type": "echo", "delay_ms": 5},
                "rec": {"type": "recording", "delay_ms": 100},
            },
            "defaults": {"ttt": "echo", "tti": "echo", "tts": "echo", "stt": "echo"},
        }
    )
    client: TestClient[Any, Any] = await make_client(
        config, plugins=load_plugins({"rec": KitPlugin(RecordingBinding)})
    )
    return client


async def start_chat(client: TestClient[Any, Any], **fields: Any) -> str:
    response = await client.post("/playground/chat", data=fields, headers=HX)
    html = await response.text()
    assert response.status == 200, html
    match = STREAM_URL.search(html)
    assert match, html
    return match.group(1)


async def test_chat_post_returns_the_exchange_partial(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/playground/chat", data={"prompt": "<i>hi</i>", "model": "echo/echo"}, headers=HX
    )
    html = await response.text()
    assert response.headers["Vary"] == "HX-Request"
    assert "<html" not in html and html.count('<article class="turn') == 2
    assert "&lt;i&gt;hi&lt;/i&gt;" in html and "<i>hi</i>" not in html
    assert 'hx-ext="sse"' in html and 'sse-close="done"' in html
    assert 'sse-swap="token"' in html and 'sse-swap="think"' in html
    assert STOP_URL.search(html)
    assert '<input type="hidden" name="history_role" value="user" form="chat-form">' in html


async def test_chat_stream_sends_escaped_tokens_then_done(client: TestClient[Any, Any]) -> None:
    url = await start_chat(client, prompt="a <b>bold</b>\nmove & more", model="echo/think")
    response = await client.get(url)
    assert response.content_type == "text/event-stream"
    events = parse_sse(await response.text())
    names = [name for name, _ in events]
    assert names[-1] == "done" and names.count("done") == 1
    assert "think" in names and "token" in names
    tokens = "".join(data for name, data in events if name == "token")
    assert tokens == "a &lt;b&gt;bold&lt;/b&gt;\nmove &amp; more"
    thoughts = "".join(data for name, data in events if name == "think")
    assert thoughts.startswith("The user said: a &lt;b&gt;")
    done = events[-1][1]
    assert 'name="history_text" value="a &lt;b&gt;bold&lt;/b&gt;\nmove &amp; more"' in done
    assert 'data-finish="stop"' in done


async def test_a_stream_runs_once(client: TestClient[Any, Any]) -> None:
    url = await start_chat(client, prompt="once")
    await (await client.get(url)).text()
    again = parse_sse(await (await client.get(url)).text())
    assert [name for name, _ in again] == ["failure", "done"]
    assert "finished or expired" in again[0][1]


async def test_chat_history_system_prompt_and_sampling_reach_the_binding(
    client: TestClient[Any, Any],
) -> None:
    url = await start_chat(
        client,
        prompt="one two three four",
        model="echo/echo",
        max_tokens="2",
        system_prompt="be brief",
        history_role=["user", "assistant"],
        history_text=["earlier", "reply"],
        temperature="",
    )
    entry = next(iter(client.app[WEB_STREAMS].entries.values()))
    messages = [(m.role, m.content) for m in entry.prepared.request.messages]
    assert messages == [
        ("system", "be brief"),
        ("user", "earlier"),
        ("assistant", "reply"),
        ("user", "one two three four"),
    ]
    assert entry.prepared.request.parameters == {"max_tokens": 2}
    assert entry.prepared.face == "web"
    events = parse_sse(await (await client.get(url)).text())
    assert "".join(d for n, d in events if n == "token") == "one two"
    assert 'data-finish="length"' in events[-1][1]


async def test_stop_closes_the_binding_stream_on_the_server(
    rec_client: TestClient[Any, Any],
) -> None:
    words = " ".join(f"w{i}" for i in range(50))  # 50 tokens, 100 ms apart
    url = await start_chat(rec_client, prompt=words, model="rec/slow")
    stop_url = url + "/stop"
    binding = rec_client.app[REGISTRY].get("rec")
    assert isinstance(binding, RecordingBinding)
    async with rec_client.get(url) as response:
        received = b""
        while received.count(b"event: token") < 3:
            received += await response.content.readany()
        stop = await rec_client.post(stop_url, headers=HX)
        assert stop.status == 204
        await asyncio.wait_for(binding.closed.wait(), 2)
        rest = (await response.read()).decode()
    assert not binding.finished and binding.yielded < 10
    events = parse_sse(received.decode() + rest)
    assert events[-1][0] == "done" and "stopped" in events[-1][1]
    assert "w49" not in received.decode() + rest
    assert rec_client.app[WEB_STREAMS].entries == {}  # finished streams are forgotten
    gone = await rec_client.post(stop_url, headers=HX)
    assert gone.status == 404


async def test_stop_before_the_stream_connects_never_runs_it(
    rec_client: TestClient[Any, Any],
) -> None:
    url = await start_chat(rec_client, prompt="never", model="rec/slow")
    assert (await rec_client.post(url + "/stop", headers=HX)).status == 204
    events = parse_sse(await (await rec_client.get(url)).text())
    binding = rec_client.app[REGISTRY].get("rec")
    assert isinstance(binding, RecordingBinding)
    assert binding.yielded == 0
    assert [n for n, _ in events] == ["done"] and "stopped" in events[0][1]


async def test_client_disconnect_closes_the_binding_stream(
    rec_client: TestClient[Any, Any],
) -> None:
    url = await start_chat(rec_client, prompt="a b c d e f g h i j k l", model="rec/slow")
    binding = rec_client.app[REGISTRY].get("rec")
    assert isinstance(binding, RecordingBinding)
    response = await rec_client.get(url)
    await response.content.readany()
    response.close()
    await asyncio.wait_for(binding.closed.wait(), 3)
    assert not binding.finished


async def test_backend_error_arrives_as_a_failure_partial(client: TestClient[Any, Any]) -> None:
    url = await start_chat(client, prompt="x y z", model="echo/fail")
    events = parse_sse(await (await client.get(url)).text())
    names = [n for n, _ in events]
    assert names == ["token", "failure", "done"]
    assert 'class="error"' in events[1][1] and "fails on purpose" in events[1][1]
    assert "failed" in events[2][1]


async def test_chat_without_javascript_answers_in_a_full_page(
    client: TestClient[Any, Any],
) -> None:
    response = await client.post(
        "/playground/chat",
        data={
            "prompt": "plain post",
            "model": "echo/think",
            "history_role": ["user", "assistant"],
            "history_text": ["first", "first"],
        },
    )
    html = await response.text()
    assert response.status == 200 and "<html" in html
    assert html.count('<article class="turn') == 4
    assert '<div class="think">The user said: plain post</div>' in html
    assert 'value="echo/think" selected' in html  # the form keeps the choices
    assert "sse-connect" not in html


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "hi", "temperature": "9"}, "temperature"),
        ({"prompt": "hi", "max_tokens": "many"}, "max_tokens"),
        ({"prompt": "hi", "history_role": ["user"], "history_text": []}, "history_text"),
        ({"prompt": "hi", "history_role": ["wizard"], "history_text": ["x"]}, "history_role"),
    ],
)
async def test_invalid_chat_form_is_a_422_partial(
    client: TestClient[Any, Any], fields: dict[str, Any], named: str
) -> None:
    response = await client.post("/playground/chat", data=fields, headers=HX)
    html = await response.text()
    assert response.status == 422
    assert response.headers["Vary"] == "HX-Request"
    assert html.lstrip().startswith('<div class="error" role="alert" data-status="422">')
    assert f"<code>{named}</code>" in html
    full = await client.post("/playground/chat", data=fields)
    assert full.status == 422 and "<html" in await full.text()


async def test_unknown_instance_and_personality_are_404_partials(
    client: TestClient[Any, Any],
) -> None:
    response = await client.post(
        "/playground/chat", data={"prompt": "hi", "model": "ghost/x"}, headers=HX
    )
    assert response.status == 404 and "no binding instance named" in await response.text()
    response = await client.post(
        "/playground/chat", data={"prompt": "hi", "personality": "nobody"}, headers=HX
    )
    assert response.status == 404 and "no personality named" in await response.text()


async def test_image_streams_progress_and_the_result(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/playground/image",
        data={"prompt": "a square", "width": "16", "height": "12", "seed": "7"},
        headers=HX,
    )
    html = await response.text()
    assert response.status == 200 and "rendering with echo/echo" in html
    url = STREAM_URL.search(html)
    assert url
    events = parse_sse(await (await client.get(url.group(1))).text())
    assert [n for n, _ in events] == ["done"]
    done = events[0][1]
    assert '<img src="data:image/png;base64,' in done and "seed 7" in done
    assert 'download="lollms-tti-1.png"' in done
    data = re.search(r'src="data:image/png;base64,([^"]+)"', done)
    assert data and base64.b64decode(data.group(1)).startswith(b"\x89PNG")


async def test_image_to_image_upload(client: TestClient[Any, Any]) -> None:
    form = aiohttp.FormData()
    form.add_field("prompt", "recolour")
    form.add_field("image", b"\x89PNG fake", filename="in.png", content_type="image/png")
    html = await (await client.post("/playground/image", data=form, headers=HX)).text()
    url = STREAM_URL.search(html)
    assert url
    entry = next(iter(client.app[WEB_STREAMS].entries.values()))
    assert entry.prepared.request.generation_type == "i2i"
    assert entry.prepared.request.inputs[0].data == b"\x89PNG fake"
    done = parse_sse(await (await client.get(url.group(1))).text())[-1][1]
    assert 'download="lollms-i2i-1.png"' in done


async def test_image_without_javascript_and_422(client: TestClient[Any, Any]) -> None:
    form = aiohttp.FormData()
    form.add_field("prompt", "plain")
    form.add_field("image", b"", filename="", content_type="application/octet-stream")
    response = await client.post("/playground/image", data=form)
    html = await response.text()
    assert response.status == 200 and "<html" in html and '<img src="data:image/png' in html
    bad = await client.post("/playground/image", data={"prompt": "p", "width": "3"}, headers=HX)
    assert bad.status == 422 and "<code>width</code>" in await bad.text()


async def test_speech_returns_an_audio_player(client: TestClient[Any, Any]) -> None:
    response = await client.post("/playground/speech", data={"text": "hello"}, headers=HX)
    html = await response.text()
    assert response.status == 200 and "<html" not in html
    assert '<audio controls src="data:audio/wav;base64,' in html
    assert 'download="lollms-speech.wav"' in html
    full = await client.post("/playground/speech", data={"text": "hello"})
    assert "<html" in await full.text()


async def test_transcription_of_an_upload(client: TestClient[Any, Any]) -> None:
    form = aiohttp.FormData()
    form.add_field("file", speak("hi there"), filename="hi.wav", content_type="audio/wav")
    response = await client.post("/playground/transcribe", data=form, headers=HX)
    html = await response.text()
    assert response.status == 200
    assert '<blockquote class="transcript">hi there</blockquote>' in html


async def test_transcription_errors_render_in_place(client: TestClient[Any, Any]) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"not audio", filename="x.txt", content_type="text/plain")
    response = await client.post("/playground/transcribe", data=form, headers=HX)
    assert response.status == 415 and "echo reads WAV audio only" in await response.text()
    missing = aiohttp.FormData()
    missing.add_field("language", "en")
    response = await client.post("/playground/transcribe", data=missing, headers=HX)
    assert response.status == 422 and "<code>file</code>" in await response.text()


async def test_playground_redirects_to_chat(client: TestClient[Any, Any]) -> None:
    response = await client.get("/playground", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/playground/chat"


async def test_a_stream_belongs_to_the_key_that_started_it(
    client: TestClient[Any, Any],
) -> None:
    from lollms_server.security.principal import Principal, reset_current, set_current

    url = await start_chat(client, prompt="mine")  # local access: no key
    stream_id = url.rsplit("/", 1)[-1]
    streams = client.app[WEB_STREAMS]
    token = set_current(Principal(role="user", key_id="someone-else"))
    try:
        assert streams.get(stream_id) is None and streams.claim(stream_id) is None
    finally:
        reset_current(token)
    assert streams.claim(stream_id) is not None


async def test_choosing_a_personality_shows_its_welcome_message(
    client: TestClient[Any, Any],
) -> None:
    page = await (await client.get("/playground/chat")).text()
    assert 'id="welcome" hidden' in page and 'hx-get="/playground/chat/welcome"' in page
    welcome = "/playground/chat/welcome"
    chosen = await client.get(welcome, params={"personality": "concise_assistant"}, headers=HX)
    assert chosen.status == 200
    assert "I keep my answers short" in await chosen.text()
    none = await (await client.get(welcome, params={"personality": ""}, headers=HX)).text()
    assert none.strip() == '<p class="welcome muted" id="welcome" hidden></p>'
    plain = await client.get(
        welcome, params={"personality": "concise_assistant"}, allow_redirects=False
    )
    assert plain.status == 302
    assert plain.headers["Location"] == "/playground/chat?personality=concise_assistant"
