"""Upstream lollms_server's documented calls and client examples, run against a real server
process with a key, as those clients make them: the curl examples of its DOCUMENTATION.md,
`client_examples/streaming_client`, and `client_examples/chat_app` (health and key check,
personality, binding and model menus, streamed chat, `/imagine`, errors read from `detail`)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from PIL import Image

from lollms_server.testing.process import SERVER_COMMAND, ServerProcess, lollms_process, server_env

CONFIG = """
[bindings.echo]
type = "echo"
delay_ms = 0

[defaults]
ttt = "echo/echo"
tti = "echo/echo"

[security]
local_access = false
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The `/api/v1` base URL of a server that needs a key, and a key (made with the CLI)."""
    folder = tmp_path_factory.mktemp("upstream-flows")
    with lollms_process(folder, CONFIG) as running:
        key = make_key(running, folder)
        yield f"{running.url}/api/v1", key


def make_key(server: ServerProcess, folder: Any) -> str:
    done = subprocess.run(
        [*SERVER_COMMAND, "--config", str(folder / "lollms.toml"), "keys", "create", "--name",
         "upstream-client"],
        env=server_env(folder / "data"), capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def headers(key: str | None, stream: bool = False) -> dict[str, str]:
    """The chat app's build_headers: JSON, SSE when streaming, X-API-Key when set."""
    result = {"Content-Type": "application/json"}
    result["Accept"] = "text/event-stream" if stream else "application/json"
    if key:
        result["X-API-Key"] = key
    return result


def sse_messages(response: requests.Response) -> Iterator[dict[str, Any]]:
    """What sseclient's `events()` gives the examples: the JSON of each `message` event."""
    name, data = "message", []
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif not line and data:
            if name == "message":
                yield json.loads("\n".join(data))
            name, data = "message", []


def stream_text(base: str, key: str, payload: dict[str, Any]) -> tuple[str, list[Any]]:
    """The streaming client's loop: print chunks, stop at `final` (or `error`)."""
    text, final = "", []
    url = f"{base}/generate"
    with requests.post(url, headers=headers(key, True), json=payload, stream=True, timeout=60) as r:
        r.raise_for_status()
        assert "text/event-stream" in r.headers["content-type"]
        for chunk in sse_messages(r):
            if chunk["type"] == "chunk" and isinstance(chunk["content"], str):
                text += chunk["content"]
            elif chunk["type"] == "final":
                final = chunk["content"]
                break
            elif chunk["type"] == "error":
                raise AssertionError(chunk)
    return text, final


def test_documented_curl_calls(world: tuple[str, str]) -> None:
    base, key = world
    question = {"input_data": [user("What is the capital of France?")], "stream": False}
    answer = requests.post(f"{base}/generate", headers=headers(key), json=question, timeout=60)
    assert answer.status_code == 200 and answer.json()["output"][0]["data"].startswith("What")
    poem = {"input_data": [user("Write a short poem about stars.")], "stream": True}
    text, final = stream_text(base, key, poem)
    assert text == "Write a short poem about stars." == final[0]["data"]
    style = base64.b64encode(png(4)).decode()
    cat = {
        "input_data": [
            {"type": "text", "role": "user_prompt", "data": "A cute cat wearing sunglasses"},
            {"type": "image", "role": "style_reference", "data": style, "mime_type": "image/png"},
        ],
        "generation_type": "tti",
        "binding_name": "echo",
    }
    image = requests.post(f"{base}/generate", headers=headers(key), json=cat, timeout=60)
    assert image.status_code == 200, image.text
    assert image.json()["output"][0]["mime_type"] == "image/png"
    tokens = requests.post(
        f"{base}/tokenize", headers=headers(key), json={"text": "hi"}, timeout=60
    )
    assert tokens.json() == {**tokens.json(), "tokens": [104, 105], "count": 2}


def user(text: str) -> dict[str, str]:
    return {"type": "text", "role": "user_prompt", "data": text}


def png(size: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_streaming_client(world: tuple[str, str]) -> None:
    base, key = world
    prompt = "Write a short story about a robot discovering music."
    payload = {
        "input_data": [{"type": "text", "role": "user_prompt", "data": prompt}],
        "personality": None,
        "stream": True,
        "generation_type": "ttt",
        "parameters": {"max_tokens": 200, "temperature": 0.7},
    }
    text, final = stream_text(base, key, payload)
    assert text == prompt and final[0]["type"] == "text"


def test_chat_app_session(world: tuple[str, str]) -> None:
    base, key = world
    health = requests.get(f"{base}/health", headers=headers(None), timeout=60).json()
    assert health["api_key_required"] is True and health["version"]
    refused = requests.get(f"{base}/list_personalities", headers=headers(None), timeout=60)
    assert refused.status_code == 401 and refused.json()["detail"]

    def menu(endpoint: str, list_key: str, dict_list: bool) -> list[str]:
        """select_item_from_api_list: the names the app offers in a menu."""
        data = requests.get(f"{base}{endpoint}", headers=headers(key), timeout=60).json()
        raw = data.get(list_key)
        items = list(raw.values()) if dict_list and isinstance(raw, dict) else raw
        if not dict_list and isinstance(raw, dict):
            items = list(raw.keys())
        return [item.get("name") if dict_list else item for item in items]

    personalities = menu("/list_personalities", "personalities", True)
    assert "concise_assistant" in personalities
    bindings = menu("/list_bindings", "binding_instances", False)
    assert bindings == ["echo"]
    models = menu(f"/list_available_models/{bindings[0]}", "models", True)
    assert "echo" in models

    chat = {
        "input_data": [{"type": "text", "role": "user_prompt", "data": "hello there"}],
        "generation_type": "ttt",
        "personality": "concise_assistant",
        "binding_name": bindings[0],
        "model_name": "echo",
        "stream": True,
    }
    text, final = stream_text(base, key, chat)
    assert text.endswith("hello there") and final[0]["data"] == text

    imagine = {
        "input_data": [{"type": "text", "role": "user_prompt", "data": "a red boat"}],
        "generation_type": "tti",
        "binding_name": None,
        "model_name": None,
        "stream": False,
    }
    made = requests.post(f"{base}/generate", headers=headers(key), json=imagine, timeout=60)
    assert made.status_code == 200 and "application/json" in made.headers["content-type"]
    (image,) = [item for item in made.json()["output"] if item.get("type") == "image"]
    Image.open(io.BytesIO(base64.b64decode(image["data"]))).verify()  # what the app saves

    unknown = {**chat, "personality": "no_such_personality", "stream": False}
    failed = requests.post(f"{base}/generate", headers=headers(key), json=unknown, timeout=60)
    assert failed.status_code == 404 and "no_such_personality" in failed.json()["detail"]
