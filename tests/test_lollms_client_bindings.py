"""The real `lollms-client` library's `lollms_webui`, `openai` and `ollama` LLM bindings against
a real server process (echo binding): text whole and streamed, chat, embeddings, models."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import requests
from lollms_client import LollmsClient
from lollms_client.lollms_types import MSG_TYPE
from lollms_client_world import new_requests, requests_seen, server

from lollms_server.builtin import tiny_media
from lollms_server.testing.process import ServerProcess

__all__ = ["server"]


class Chunks:
    """A streaming callback that keeps what it is given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def __call__(self, chunk: str, kind: Any = None, *args: Any, **kwargs: Any) -> bool:
        self.seen.append((chunk, kind))
        return True

    @property
    def text(self) -> str:
        """The chunks' text, in order."""
        return "".join(chunk for chunk, _ in self.seen)


def client_of(binding: str, host: str, **config: Any) -> LollmsClient:
    """A LollmsClient whose LLM binding `binding` talks to `host`, model `echo/echo`."""
    settings = {"host_address": host, "model_name": "echo/echo", **config}
    return LollmsClient(llm_binding_name=binding, llm_binding_config=settings)


# -- lollms_webui ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def webui(server: ServerProcess) -> LollmsClient:
    """The `lollms_webui` binding (the older generator routes)."""
    return client_of("lollms_webui", server.url)


def test_webui_text_whole(server: ServerProcess, webui: LollmsClient) -> None:
    # LollmsClient.generate_text passes `think`, which this binding's generate_text does not
    # take (a library bug, see docs/compatibility.md): the binding is called directly
    before = requests_seen(server)
    assert webui.llm.generate_text("hello world") == "hello world"
    assert new_requests(server, before, "POST /lollms_generate 200") == [
        "POST /lollms_generate 200"
    ]


def test_webui_text_streamed_with_callback(webui: LollmsClient) -> None:
    chunks = Chunks()
    text = webui.llm.generate_text("one two three", stream=True, streaming_callback=chunks)
    assert text == "one two three" == chunks.text
    assert {kind for _, kind in chunks.seen} == {MSG_TYPE.MSG_TYPE_CHUNK}


def test_webui_system_prompt_markup_goes_to_the_model(webui: LollmsClient) -> None:
    assert webui.llm.generate_text("hi", system_prompt="sys") == "!@>system: sys\n!@>user: hi"


def test_webui_tokens_embeddings_models_personalities(webui: LollmsClient) -> None:
    llm = webui.llm
    assert llm.tokenize("a b") == [97, 32, 98]
    assert llm.detokenize([97, 32, 98]) == "a b"
    assert llm.count_tokens("abc") == 3
    vector = llm.embed("hello")
    assert len(vector) == 16
    assert {"model_name": "echo/echo"} in llm.list_models()
    assert "concise_assistant" in llm.lollms_listMountedPersonalities()["personalities"]


def test_webui_bad_body_is_a_4xx(server: ServerProcess) -> None:
    reply = requests.post(f"{server.url}/lollms_generate", json={"n_predict": 3}, timeout=30)
    assert reply.status_code == 422 and "prompt" in reply.text


def test_webui_images_are_checked_before_the_vision_capability(server: ServerProcess) -> None:
    url = f"{server.url}/lollms_generate_with_images"
    not_an_image = base64.b64encode(b"just some text").decode()
    reply = requests.post(url, json={"prompt": "what?", "images": [not_an_image]}, timeout=30)
    assert reply.status_code == 415 and "images[0]" in reply.text
    png = base64.b64encode(tiny_media.png(tiny_media.gradient(2, 2, 0))).decode()
    reply = requests.post(url, json={"prompt": "what?", "images": [png]}, timeout=30)
    assert reply.status_code == 501 and "vision" in reply.text  # echo cannot read images


# -- openai ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openai_client(server: ServerProcess) -> LollmsClient:
    """The `openai` binding on `/v1`."""
    return client_of("openai", f"{server.url}/v1", service_key="unused")


def test_openai_text_whole_and_streamed(server: ServerProcess, openai_client: LollmsClient) -> None:
    before = requests_seen(server)
    assert openai_client.generate_text("hello world") == "hello world"
    chunks = Chunks()
    text = openai_client.generate_text("one two three", stream=True, streaming_callback=chunks)
    assert text == "one two three" == chunks.text
    seen = new_requests(server, before, *["POST /v1/chat/completions 200"] * 2)
    assert [line for line in seen if "/chat/" in line] == ["POST /v1/chat/completions 200"] * 2


def test_openai_chat_and_models(openai_client: LollmsClient) -> None:
    messages = [{"role": "user", "content": "tell me"}]
    assert openai_client.generate_from_messages(messages) == "tell me"
    names = {m["model_name"] for m in openai_client.llm.list_models()}
    assert {"echo/echo", "echo/think"} <= names


# -- ollama ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ollama_client(server: ServerProcess) -> LollmsClient:
    """The `ollama` binding on the Ollama face."""
    return client_of("ollama", server.url)


def test_ollama_text_whole(ollama_client: LollmsClient) -> None:
    assert ollama_client.generate_text("hello world") == "hello world"


def test_ollama_text_streamed_with_callback(ollama_client: LollmsClient) -> None:
    # with think off the library hands every chunk on twice (it lacks a `continue`: see
    # docs/compatibility.md); with think on, each chunk once
    chunks = Chunks()
    text = ollama_client.generate_text(
        "one two three", stream=True, streaming_callback=chunks, think=True
    )
    assert text == "one two three" == chunks.text


def test_ollama_chat_models_context(ollama_client: LollmsClient) -> None:
    messages = [{"role": "user", "content": "hi there"}]
    assert ollama_client.generate_from_messages(messages) == "hi there"
    assert "echo/echo:latest" in {m["model_name"] for m in ollama_client.llm.list_models()}
    assert ollama_client.get_ctx_size() == 4096
    running = ollama_client.llm.ps()  # /api/ps: the echo model loaded by the chat above
    assert "echo/echo:latest" in {m["model_name"] for m in running}


def test_ollama_embeddings_of_the_hard_coded_model_use_the_default(
    server: ServerProcess, ollama_client: LollmsClient
) -> None:
    before = requests_seen(server)
    vector = ollama_client.embed("hello")  # the library asks for bge-m3
    assert len(vector) == 16
    assert "POST /api/embeddings 200" in new_requests(server, before, "POST /api/embeddings 200")
    reply = requests.post(
        f"{server.url}/api/embed", json={"model": "bge-m3", "input": "hello"}, timeout=30
    ).json()
    assert reply["model"] == "echo/echo:latest"
    assert reply["embeddings"][0] == pytest.approx(vector)
