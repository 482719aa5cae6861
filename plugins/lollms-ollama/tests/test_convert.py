"""Settings validation and the pure conversions between our objects and Ollama's API."""

from __future__ import annotations

import pytest
from lollms_ollama import OllamaBinding, convert

from lollms_server.bindings import ChatMessage, InputItem
from lollms_server.errors import ConfigError
from lollms_server.testing import build_binding


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:11434", "http://127.0.0.1:11434"),
        ("localhost", "http://localhost:11434"),
        ("http://10.0.0.2:8080/", "http://10.0.0.2:8080"),
        ("https://ollama.example/proxy/", "https://ollama.example/proxy"),
    ],
)
def test_host_normalized(given: str, expected: str) -> None:
    assert convert.normalize_host(given) == expected


@pytest.mark.parametrize("bad", ["ftp://host", "http://", "http://host:port", " "])
def test_bad_hosts_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        convert.normalize_host(bad)
    with pytest.raises(ConfigError, match="host"):
        build_binding(OllamaBinding, "x", {"host": bad})


def test_settings() -> None:
    binding = build_binding(
        OllamaBinding,
        "x",
        {"host": "http://user:pw@h:1", "keep_alive": "5m", "headers": {"X-Token": "secret"}},
    )
    assert isinstance(binding, OllamaBinding)
    assert binding.keep_alive == "5m" and binding.url == "http://user:pw@h:1"
    shown = binding.public_settings()
    assert shown["headers"] == {"X-Token": "***"} and shown["host"] == "http://***@h:1"
    assert "secret" not in repr(shown) and "pw" not in repr(shown)
    for bad in ({"keep_alive": "soon"}, {"headers": {"bad header": "x"}}, {"models": [""]}):
        with pytest.raises(ConfigError):
            build_binding(OllamaBinding, "x", bad)
    with pytest.raises(ConfigError, match="Unknown field"):
        build_binding(OllamaBinding, "x", {"base_url": "http://h:1"})


def test_options() -> None:
    parameters = {
        "temperature": 0.1,
        "max_tokens": 9,
        "stop": "END",
        "num_ctx": 2048,
        "top_k": 4,
        "tools": [],
        "keep_alive": "1m",
        "seed": None,
    }
    assert convert.options(parameters) == {
        "temperature": 0.1,
        "num_predict": 9,
        "stop": ["END"],
        "num_ctx": 2048,
        "top_k": 4,
    }


def test_response_format() -> None:
    assert convert.response_format({}) is None
    assert convert.response_format({"response_format": {"type": "json_object"}}) == "json"
    schema = {"type": "object"}
    wrapped = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert convert.response_format({"response_format": wrapped}) == schema
    assert convert.response_format({"format": schema}) == schema
    assert convert.response_format({"response_format": {"type": "text"}}) is None


def test_messages() -> None:
    image = InputItem("image", data=b"\x89PNG", mime_type="image/png")
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    converted = convert.messages(
        [
            ChatMessage("system", "be brief"),
            ChatMessage("user", "look", (image,)),
            ChatMessage("assistant", "", tool_calls=(call,)),
            ChatMessage("tool", "42", tool_call_id="c1"),  # Ollama links it by the name
        ]
    )
    assert converted == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "look", "images": [b"\x89PNG"]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
        },
        {"role": "tool", "content": "42", "tool_name": "f"},
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8.0B", 8_000_000_000), ("134.52M", 134_520_000), ("7b", 7_000_000_000), ("", None)],
)
def test_parameter_size(text: str, expected: int | None) -> None:
    assert convert.parse_parameter_size(text) == expected


def test_same_model() -> None:
    assert convert.same_model("llama3", "llama3:latest")
    assert not convert.same_model("llama3:8b", "llama3")
