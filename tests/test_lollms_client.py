"""The real `lollms-client` library's `lollms` bindings (LLM, TTI, TTS, STT) against a real
server process: every flow reaches a route of ours (none falls back to a local guess)."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import pytest
import requests
from lollms_client import LollmsClient
from lollms_client.lollms_types import MSG_TYPE
from lollms_client_world import new_requests, requests_seen, server, write_speech

from lollms_server.builtin import tiny_media
from lollms_server.testing.process import ServerProcess

__all__ = ["server"]


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> LollmsClient:
    """`LollmsClient(llm_binding_name="lollms")` on the server, model `echo/echo`."""
    return LollmsClient(
        llm_binding_name="lollms",
        llm_binding_config={"host_address": server.url, "model_name": "echo/echo"},
    )


def test_text_whole_sends_the_thinking_extensions_without_a_400(
    server: ServerProcess, client: LollmsClient
) -> None:
    before = requests_seen(server)
    assert client.generate_text("hello world") == "hello world"
    # the library sends chat_template_kwargs, thinking and reasoning_effort; a 400 would make
    # it retry without the caller's temperature
    seen = new_requests(server, before, "POST /v1/chat/completions 200")
    assert [line for line in seen if "/chat/" in line] == ["POST /v1/chat/completions 200"]


def test_text_streamed_with_callback(server: ServerProcess, client: LollmsClient) -> None:
    seen: list[tuple[str, Any]] = []

    def callback(chunk: str, kind: Any = None, *args: Any, **kwargs: Any) -> bool:
        seen.append((chunk, kind))
        return True

    text = client.generate_text("one two three", stream=True, streaming_callback=callback)
    assert text == "one two three"
    assert [chunk for chunk, _ in seen] == ["one", " two", " three"]
    assert {kind for _, kind in seen} == {MSG_TYPE.MSG_TYPE_CHUNK}


def test_chat_messages(client: LollmsClient) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second question"},
    ]
    assert client.generate_from_messages(messages) == "second question"


def test_embeddings_of_the_hard_coded_openai_model_use_the_default(
    server: ServerProcess, client: LollmsClient
) -> None:
    before = requests_seen(server)
    vector = client.embed("hello")
    assert len(vector) == 16 and all(math.isfinite(v) for v in vector)
    assert "POST /v1/embeddings 200" in new_requests(server, before, "POST /v1/embeddings 200")
    direct = requests.post(
        f"{server.url}/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": "hello"},
        timeout=30,
    ).json()
    assert direct["model"] == "echo/echo"  # says which model served the alias
    assert direct["data"][0]["embedding"] == pytest.approx(vector)


def test_tokenize_detokenize_count_use_the_server_tokenizer(
    server: ServerProcess, client: LollmsClient
) -> None:
    before = requests_seen(server)
    tokens = client.tokenize("a b")
    assert tokens == [97, 32, 98]  # echo's byte tokenizer, not tiktoken's ids
    assert client.detokenize(tokens) == "a b"
    assert client.count_tokens("a b c") == 5
    tokenize = "POST /lollms/v1/tokenize 200"
    seen = new_requests(server, before, tokenize, tokenize, "POST /lollms/v1/detokenize 200")
    assert seen.count("POST /lollms/v1/tokenize 200") == 2
    assert "POST /lollms/v1/detokenize 200" in seen


def test_context_size_comes_from_the_server(server: ServerProcess, client: LollmsClient) -> None:
    before = requests_seen(server)
    assert client.llm._get_ctx_size("echo/echo") == 4096  # echo's models declare 4096
    seen = new_requests(server, before, "POST /lollms/v1/context_size 200")
    assert seen == ["POST /lollms/v1/context_size 200"]  # not the library's 4096 fallback


def test_models_personalities_capabilities(client: LollmsClient) -> None:
    llm = client.llm
    names = [m["model_name"] for m in llm.list_models()]
    assert "echo/echo" in names
    by_type = llm.list_models_by_type("llm")
    assert {m["model_name"] for m in by_type} >= {"echo/echo", "echo/think"}
    assert all(m["context_size"] == 4096 for m in by_type)
    assert "echo/echo" in {m["model_name"] for m in llm.list_models_by_type("tti", "echo")}
    assert llm.list_models_by_type("tti", "nosuch") == []
    personalities = llm.lollms_listMountedPersonalities()
    assert "concise_assistant" in {p["name"] for p in personalities["data"]}
    capabilities = llm.get_capabilities()
    assert {"ttt", "tti", "tts", "stt"} <= set(capabilities["capabilities"])
    assert capabilities["active_bindings"]["echo"]["type"] == "echo"


def test_personality_as_model_prefix(server: ServerProcess) -> None:
    model = "concise_assistant@echo/echo"
    config = {"host_address": server.url, "model_name": model}
    persona = LollmsClient(llm_binding_name="lollms", llm_binding_config=config)
    assert persona.generate_text("hi there") == "hi there"
    assert persona.count_tokens("abc") == 3  # the tokenizer of the model behind the personality
    assert persona.llm._get_ctx_size(model) == 4096


def test_model_auto_detected(server: ServerProcess) -> None:
    auto = LollmsClient(llm_binding_name="lollms", llm_binding_config={"host_address": server.url})
    assert auto.llm.model_name == "echo/echo"


def test_speech_voices_and_transcription(
    server: ServerProcess, client: LollmsClient, tmp_path: Path
) -> None:
    before = requests_seen(server)
    audio = client.llm.tts_generate("hello there")
    assert audio[:4] == b"RIFF"
    # /v1/audio/speech refuses mp3 (the server does not transcode); the library falls back
    seen = new_requests(
        server, before, "POST /v1/audio/speech 400", "POST /lollms/v1/audio/speech 200"
    )
    assert seen == ["POST /v1/audio/speech 400", "POST /lollms/v1/audio/speech 200"]
    wav = tmp_path / "spoken.wav"
    wav.write_bytes(audio)
    assert client.llm.transcribe_audio(str(wav)) == "hello there"  # whisper-1 -> default stt
    voices = client.llm.tts_list_voices()
    assert "echo/echo" in {v["id"] for v in voices}


def test_lollms_tti_tts_stt_bindings(server: ServerProcess, tmp_path: Path) -> None:
    media = LollmsClient(
        llm_binding_name=None,
        tti_binding_name="lollms",
        tti_binding_config={"host_address": server.url},
        tts_binding_name="lollms",
        tts_binding_config={"host_address": server.url, "service_key": "client-1"},
        stt_binding_name="lollms",
        stt_binding_config={"host_address": server.url},
    )
    assert media.tti is not None and media.tts is not None and media.stt is not None
    image = media.tti.generate_image("a red cat", width=64, height=48)
    assert image[:8] == b"\x89PNG\r\n\x1a\n"
    assert "echo/echo" in {m["model_name"] for m in media.tti.list_models()}
    before = requests_seen(server)
    assert media.tts.generate_audio("hello there") == b""  # the library returns no audio
    assert new_requests(server, before, "POST /text2Audio 200") == ["POST /text2Audio 200"]
    assert "echo/echo" in media.tts.list_voices()
    assert media.stt.transcribe_audio(str(write_speech(tmp_path, "good day"))) == "good day"
    assert "echo/echo" in media.stt.list_models()


def lollms_tti(server: ServerProcess) -> Any:
    """lollms-client's `lollms` image binding pointed at the server."""
    tti = LollmsClient(
        llm_binding_name=None,
        tti_binding_name="lollms",
        tti_binding_config={"host_address": server.url},
    ).tti
    assert tti is not None
    return tti


def test_lollms_tti_forwards_num_inference_steps(server: ServerProcess) -> None:
    """lollms-client's `lollms` TTI binding forwards `num_inference_steps` to
    /v1/images/generations (its own name, the diffusers one): it is taken as `steps`.
    Before, the server refused it, 400 `num_inference_steps: Unknown field`."""
    tti = lollms_tti(server)
    before = requests_seen(server)
    image = tti.generate_image("a red cat", width=64, height=48, num_inference_steps=3, seed=4)
    assert image[:8] == b"\x89PNG\r\n\x1a\n"
    seen = new_requests(server, before, "POST /v1/images/generations 200")
    assert seen == ["POST /v1/images/generations 200"]
    both = {"prompt": "x", "size": "8x8", "steps": 2, "num_inference_steps": 3}
    reply = requests.post(f"{server.url}/v1/images/generations", json=both, timeout=30)
    assert reply.status_code == 400 and "num_inference_steps" in reply.text


def test_lollms_tti_edits(server: ServerProcess) -> None:
    tti = lollms_tti(server)
    source = base64.b64encode(tiny_media.png(tiny_media.gradient(8, 8, 1))).decode()
    before = requests_seen(server)
    edited = tti.edit_image(source, "make it blue", width=8, height=8)
    assert edited[:8] == b"\x89PNG\r\n\x1a\n"
    assert tti.edit_image_lollms("make it blue", source, mask_b64=source)[:4] == b"\x89PNG"
    seen = new_requests(
        server, before, "POST /v1/images/edits 200", "POST /lollms/v1/images/edit 200"
    )
    assert seen == ["POST /v1/images/edits 200", "POST /lollms/v1/images/edit 200"]


def test_text2audio_returns_the_audio(server: ServerProcess) -> None:
    reply = requests.post(
        f"{server.url}/text2Audio", json={"text": "hi", "client_id": "c", "fn": "x.wav"}, timeout=30
    )
    body = reply.json()
    assert reply.status_code == 200 and body["status"] is True
    assert body["mime_type"] == "audio/wav" and body["model"] == "echo/echo"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"thinking": "yes"}, "thinking"),
        ({"chat_template_kwargs": [1]}, "chat_template_kwargs"),
        ({"min_p": 3}, "min_p"),
        ({"not_an_extension": 1}, "not_an_extension"),
    ],
)
def test_v1_extensions_are_checked_and_unknown_fields_still_refused(
    server: ServerProcess, body: dict[str, Any], field: str
) -> None:
    payload = {"model": "echo/echo", "messages": [{"role": "user", "content": "x"}], **body}
    reply = requests.post(f"{server.url}/v1/chat/completions", json=payload, timeout=30)
    assert reply.status_code in (400, 422)
    assert field in reply.text


def test_v1_extensions_accepted(server: ServerProcess) -> None:
    payload = {
        "model": "echo/echo",
        "messages": [{"role": "user", "content": "fine"}],
        "chat_template_kwargs": {"enable_thinking": False},
        "thinking": {"type": "disabled"},
        "enable_thinking": False,
        "reasoning_effort": "none",
        "reasoning": {"effort": "low"},
        "min_p": 0.05,
    }
    reply = requests.post(f"{server.url}/v1/chat/completions", json=payload, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "fine"


def test_create_response_reaches_the_responses_api(
    server: ServerProcess, client: LollmsClient
) -> None:
    before = requests_seen(server)
    answer = client.llm.create_response(
        "hello there", instructions="be brief", max_output_tokens=20, temperature=0.2
    )
    assert answer["object"] == "response" and answer["status"] == "completed"
    message = next(item for item in answer["output"] if item["type"] == "message")
    assert message["content"][0]["text"] == "hello there"
    assert new_requests(server, before, "POST /v1/responses 200")
