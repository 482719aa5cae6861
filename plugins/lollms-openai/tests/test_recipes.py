"""The README's provider recipes, as written, against local stand-ins of those providers.

Each `toml` block of the README's "Recipes for hosted APIs" section is loaded into the
binding's ConfigSchema and served by lollms-server; its `base_url` keeps its path but points at
`standin.py` (a real aiohttp process on loopback) playing that provider: the documented path
and bearer key, the request fields the provider's API defines (others refused as it refuses
them), its answer shapes. Chat goes through lollms' /v1 face whole and streamed (images too for
DALL-E), and the requests the provider received are checked.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lollms_openai import OpenAIBinding
from lollms_openai.settings import OpenAISettings
from yarl import URL

from lollms_server.testing import free_port, serve_binding, wait_for_http
from lollms_server.testing.server import Client

README = Path(__file__).resolve().parents[1] / "README.md"
STANDIN = Path(__file__).with_name("standin.py")
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
USAGE = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}


@dataclass(frozen=True)
class Expect:
    """What a recipe must make the binding send to its provider."""

    provider: str  # standin.py's name for it
    chat_path: str  # the provider's documented chat route
    model: str
    key_env: str | None
    sampling: dict[str, Any]  # sampling fields the provider must receive under its own names
    absent: tuple[str, ...]  # fields it must not receive
    stream_options: bool = True


HOSTED_ABSENT = ("top_k", "repeat_penalty", "min_p")
EXPECTED = {
    "openai": Expect(
        "openai",
        "/v1/chat/completions",
        "gpt-4o-mini",
        "OPENAI_API_KEY",
        {"seed": 7},
        HOSTED_ABSENT,
    ),
    "gemini": Expect(
        "gemini",
        "/v1beta/openai/chat/completions",
        "gemini-2.5-flash",
        "GEMINI_API_KEY",
        {"seed": 7},
        HOSTED_ABSENT,
    ),
    "groq": Expect(
        "groq",
        "/openai/v1/chat/completions",
        "llama-3.3-70b-versatile",
        "GROQ_API_KEY",
        {"seed": 7},
        HOSTED_ABSENT,
    ),
    "mistral": Expect(
        "mistral",
        "/v1/chat/completions",
        "mistral-small-latest",
        "MISTRAL_API_KEY",
        {"random_seed": 7},
        (*HOSTED_ABSENT, "seed", "stream_options"),
        stream_options=False,
    ),
    "lmstudio": Expect(
        "lmstudio",
        "/v1/chat/completions",
        "qwen2.5-7b-instruct",
        None,
        {"seed": 7, "top_k": 20, "repeat_penalty": 1.1},
        (),
    ),
    "vllm": Expect(
        "vllm",
        "/v1/chat/completions",
        "Qwen/Qwen2.5-7B-Instruct",
        "VLLM_API_KEY",
        {"seed": 7, "top_k": 20, "repetition_penalty": 1.1},
        ("repeat_penalty",),
    ),
    "llamacpp_server": Expect(
        "llamacpp-server",
        "/v1/chat/completions",
        "model",
        "LLAMA_API_KEY",
        {"seed": 7, "top_k": 20, "repeat_penalty": 1.1},
        (),
    ),
    "localai": Expect(
        "localai",
        "/v1/chat/completions",
        "llama-3.2-1b-instruct",
        "LOCALAI_API_KEY",
        {"seed": 7, "top_k": 20, "repeat_penalty": 1.1},
        (),
    ),
}


def readme_recipes() -> dict[str, dict[str, Any]]:
    """Instance name -> its table, from every toml block of the recipes section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Recipes for hosted APIs", 1)[1].split("\n## ", 1)[0]
    recipes: dict[str, dict[str, Any]] = {}
    for block in re.findall(r"^```toml\n(.*?)^```", section, re.MULTILINE | re.DOTALL):
        for name, table in tomllib.loads(block)["bindings"].items():
            recipes[name] = table
    return recipes


RECIPES = readme_recipes()


def test_the_readme_has_a_recipe_per_provider() -> None:
    """Exactly the documented providers, each a valid `openai` instance table."""
    assert set(RECIPES) == set(EXPECTED)
    for name, table in RECIPES.items():
        assert table["type"] == "openai", name
        OpenAISettings().load({k: v for k, v in table.items() if k != "type"})


@pytest.fixture
def standin(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """The stand-in of the parametrized recipe's provider: (its address, the key it wants)."""
    expect = EXPECTED[request.param]
    port, key = free_port(), secrets.token_urlsafe(16)
    command = [sys.executable, str(STANDIN), "--provider", expect.provider, "--port", str(port)]
    process = subprocess.Popen(
        [*command, f"--key={key}"],  # a key may start with "-"
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        address = f"http://127.0.0.1:{port}"
        if not wait_for_http(f"{address}/__recorded", timeout_s=30):
            process.kill()
            raise AssertionError(process.communicate()[1].decode(errors="replace")[-2000:])
        yield address, key
    finally:
        process.terminate()
        process.wait(10)


def pointed_at(table: dict[str, Any], address: str) -> dict[str, Any]:
    """The recipe's settings with its base_url's scheme, host and port those of `address`."""
    settings = {k: v for k, v in table.items() if k != "type"}
    base = URL(settings["base_url"])
    local = URL(address)
    settings["base_url"] = str(
        base.with_scheme(local.scheme).with_host(local.host or "").with_port(local.port)
    )
    return settings


async def recorded(address: str) -> list[dict[str, Any]]:
    """What the stand-in received so far."""
    async with aiohttp.ClientSession() as session, session.get(f"{address}/__recorded") as reply:
        answer: list[dict[str, Any]] = await reply.json()
    return answer


async def stream_text(client: Client, body: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """A streamed chat through /v1: its text and its usage."""
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status == 200, await response.text()
    text, usage = "", None
    for line in (await response.text()).splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        usage = event.get("usage") or usage
        for choice in event.get("choices") or ():
            text += choice.get("delta", {}).get("content") or ""
    return text, usage


@pytest.mark.parametrize("standin", sorted(EXPECTED), indirect=True)
async def test_recipe_chats_as_its_provider_documents(
    standin: tuple[str, str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Path, bearer key and body fields of chat, whole and streamed, as the provider takes them."""
    name = request.node.callspec.params["standin"]
    expect, (address, key) = EXPECTED[name], standin
    if expect.key_env:
        monkeypatch.setenv(expect.key_env, key)
    settings = pointed_at(RECIPES[name], address)
    body = {
        "model": f"{name}/{expect.model}",
        "messages": MESSAGES,
        "max_tokens": 8,
        "temperature": 0.5,
        "seed": 7,
        "top_k": 20,
        "repeat_penalty": 1.1,
    }
    async with serve_binding(OpenAIBinding, name, settings, tmp_path / "data") as client:
        whole = await client.post("/v1/chat/completions", json=body)
        assert whole.status == 200, await whole.text()
        answer = await whole.json()
        assert answer["choices"][0]["message"]["content"] == "Hello there"
        assert {k: answer["usage"][k] for k in USAGE} == USAGE
        streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
        text, usage = await stream_text(client, streamed)
        assert text == "Hello there"
        assert usage is not None and {k: usage[k] for k in USAGE} == USAGE
    chats = [r for r in await recorded(address) if r["path"].endswith("/chat/completions")]
    assert [r["path"] for r in chats] == [expect.chat_path] * 2
    for record in chats:
        assert record["authorization"] == (f"Bearer {key}" if expect.key_env else None)
        sent = record["body"]
        assert sent["model"] == expect.model and sent["messages"] == MESSAGES
        assert sent["max_tokens"] == 8 and sent["temperature"] == 0.5
        assert {k: sent.get(k) for k in expect.sampling} == expect.sampling
        assert not set(expect.absent) & set(sent), sent
    assert chats[1]["body"]["stream"] is True
    assert ("stream_options" in chats[1]["body"]) == expect.stream_options


@pytest.mark.parametrize("standin", ["openai"], indirect=True)
async def test_openai_recipe_draws_with_dall_e_3(
    standin: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """POST /images/generations as DALL-E 3 takes it: b64_json, one image, a listed size."""
    address, key = standin
    monkeypatch.setenv("OPENAI_API_KEY", key)
    settings = pointed_at(RECIPES["openai"], address)
    async with serve_binding(OpenAIBinding, "openai", settings, tmp_path / "data") as client:
        reply = await client.post(
            "/v1/images/generations",
            json={
                "model": "openai/dall-e-3",
                "prompt": "a red square",
                "size": "1024x1024",
                "response_format": "b64_json",
            },
        )
        assert reply.status == 200, await reply.text()
        image = base64.b64decode((await reply.json())["data"][0]["b64_json"])
        assert image.startswith(b"\x89PNG")
    [drawn] = [r for r in await recorded(address) if r["path"].endswith("/images/generations")]
    assert drawn["path"] == "/v1/images/generations"
    assert drawn["authorization"] == f"Bearer {key}"
    sent = drawn["body"]
    assert sent["model"] == "dall-e-3" and sent["prompt"] == "a red square"
    assert sent["response_format"] == "b64_json" and sent["size"] == "1024x1024"
    assert sent.get("n", 1) == 1
