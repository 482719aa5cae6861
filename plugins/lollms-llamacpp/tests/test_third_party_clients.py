"""Third-party clients, unchanged, against a real server process serving SmolLM2 through
llama.cpp (a real model: real tokens, real streaming): the `ollama` client, LangChain's
ChatOpenAI (chat completions and the Responses API) and ChatOllama, LiteLLM, the
OpenAI SDK's Responses API. Greedy text can differ between streamed and whole calls, so
the structure is asserted, not the words."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from langchain_core.exceptions import ContextOverflowError
from langchain_ollama import ChatOllama
from langchain_openai import ChatOpenAI
from openai import OpenAI
from pydantic import BaseModel

from lollms_server.testing.process import ServerProcess, lollms_process, toml_table

from .conftest import SMOL

MODEL = f"local/{SMOL}"


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose default text model is SmolLM2 on llama.cpp."""
    binding = {"type": "llamacpp", "models_folders": [str(models_dir)], "n_ctx": 2048}
    binding |= {"n_parallel": 1, "n_threads": 2, "default_max_tokens": 12}
    config = toml_table("bindings.local", binding) + f"\n[defaults]\nttt = {json.dumps(MODEL)}\n"
    with lollms_process(tmp_path_factory.mktemp("clients"), config) as running:
        yield running


def test_ollama_client(server: ServerProcess) -> None:
    client = ollama.Client(host=server.url, timeout=120)
    reply = client.chat(model=MODEL, messages=[{"role": "user", "content": "Say hello."}])
    assert reply.message.content and reply.eval_count and reply.eval_count <= 12
    parts = list(client.generate(model=MODEL, prompt="Count: one, two,", stream=True))
    assert len(parts) > 2 and parts[-1].done and "".join(p.response for p in parts).strip()


def test_langchain(server: ServerProcess) -> None:
    chat = ChatOpenAI(base_url=f"{server.url}/v1", api_key="unused", model=MODEL, max_retries=0)
    answer = chat.invoke("Say hello.")
    assert isinstance(answer.content, str) and answer.content.strip()
    assert answer.response_metadata["model_name"] == MODEL
    chunks = [str(c.content) for c in chat.stream("Name a color.")]
    assert len(chunks) > 2 and "".join(chunks).strip()
    streamed = [str(c.content) for c in ChatOllama(base_url=server.url, model=MODEL).stream("Hi")]
    assert len(streamed) > 2 and "".join(streamed).strip()


def test_openai_responses(server: ServerProcess) -> None:
    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
    # greedy, on a list SmolLM2 does not end in 12 tokens (sampled, it sometimes stopped sooner)
    ask = "Count from one to one hundred in words, separated by commas."
    whole = client.responses.create(model=MODEL, input=ask, temperature=0)
    assert whole.status == "incomplete" and whole.output_text.strip(), whole
    assert whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"
    assert whole.usage is not None and whole.usage.output_tokens == 12
    events = list(client.responses.create(model=MODEL, input="Name a color.", stream=True))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    last = events[-1]  # cut at 12 tokens: incomplete, as OpenAI ends a stream cut short
    assert last.type in ("response.completed", "response.incomplete")
    assert len(deltas) > 2 and "".join(deltas) == last.response.output_text
    assert last.response.model == MODEL


def test_a_prompt_over_the_context_is_context_length_exceeded(server: ServerProcess) -> None:
    """llama.cpp's overflow reaches clients as OpenAI's `context_length_exceeded`: LangChain
    raises its ContextOverflowError and pydantic-ai its ModelContextWindowExceededError on it."""
    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
    words = "word " * 3000  # over n_ctx = 2048
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": words}])
    with pytest.raises(openai.BadRequestError) as responses:
        client.responses.create(model=MODEL, input=words, stream=True)
    for raised in (chat.value, responses.value):
        assert raised.code == "context_length_exceeded" and raised.param == "messages"
        assert "2048" in raised.message
    # LangChain reads the message (openai 3.x keeps the code out of str(error))
    chat_model = ChatOpenAI(
        base_url=f"{server.url}/v1", api_key="unused", model=MODEL, max_retries=0
    )
    with pytest.raises(ContextOverflowError):
        chat_model.invoke(words)


def test_openai_responses_parse_gets_schema_constrained_json(server: ServerProcess) -> None:
    """`text.format` reaches llama.cpp as `response_format`: its grammar makes valid JSON."""

    class Color(BaseModel):
        color: str

    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
    answer = client.responses.parse(
        model=MODEL, input="Name a color.", text_format=Color, max_output_tokens=40
    )
    assert answer.status == "completed", answer.output_text
    assert isinstance(answer.output_parsed, Color) and answer.output_parsed.color


def test_langchain_responses_api(server: ServerProcess) -> None:
    chat = ChatOpenAI(
        base_url=f"{server.url}/v1",
        api_key="unused",
        model=MODEL,
        max_retries=0,
        use_responses_api=True,
    )
    answer = chat.invoke("Say hello.")
    assert answer.text.strip()
    chunks = [c.text for c in chat.stream("Name a color.")]
    assert len(chunks) > 2 and "".join(chunks).strip()


LITELLM_SCRIPT = """
import json, sys, litellm
answer = litellm.completion(
    model="openai/" + sys.argv[2], api_base=sys.argv[1] + "/v1", api_key="unused",
    messages=[{"role": "user", "content": "Say hello."}], max_tokens=8,
)
print(json.dumps([answer.choices[0].message.content, answer.usage.completion_tokens]))
"""


def test_litellm(server: ServerProcess) -> None:
    # its own process: LiteLLM sets up global logging and callbacks on import
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LITELLM_"))}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no fetch of its price table
    done = subprocess.run(
        [sys.executable, "-c", LITELLM_SCRIPT, server.url, MODEL],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text, tokens = json.loads(done.stdout.strip().splitlines()[-1])
    assert text.strip() and 0 < tokens <= 8


@pytest.fixture(scope="module")
def tools_server(
    models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """SmolLM2 with the chat template that renders tools and tool calls (the README's)."""
    binding = {"type": "llamacpp", "models_folders": [str(models_dir)], "n_ctx": 2048}
    binding |= {"n_parallel": 1, "n_threads": 2}
    templates = f'chat_templates = {{ "{SMOL}" = "chatml-tools" }}\n'
    config = toml_table("bindings.local", binding) + templates
    config += f"\n[defaults]\nttt = {json.dumps(MODEL)}\n"
    with lollms_process(tmp_path_factory.mktemp("tools"), config) as running:
        yield running


def test_malformed_tool_requests_are_client_errors_and_open_no_circuit(
    tools_server: ServerProcess,
) -> None:
    """A `custom` tool and a history whose tool call carries arguments that are not JSON made
    llama.cpp answer 500: each was a 502 and five opened the instance's circuit for every
    caller. The first is a 400 at the face; the second is replayed with `{}` arguments, as the
    server's own function loop replays a call cut short, and answered."""
    url = tools_server.url
    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
    ollama_client = ollama.Client(host=url, timeout=120)
    say: Any = [{"role": "user", "content": "What is the weather?"}]
    cut: Any = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"ci'}}
    history: Any = [
        *say,
        {"role": "assistant", "content": None, "tool_calls": [cut]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    for _ in range(3):
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(
                model=MODEL, messages=say, tools=[{"type": "custom", "custom": {"name": "x"}}]
            )
        assert bad.value.param == "tools"
        with pytest.raises(ollama.ResponseError) as refused:
            ollama_client.chat(model=MODEL, messages=say, tools=[{"type": "custom"}])
        assert refused.value.status_code == 400
        reply = client.chat.completions.create(model=MODEL, messages=history, max_tokens=4)
        assert reply.choices[0].message.content is not None
        body = {"model": MODEL, "messages": history, "stream": False, "options": {"num_predict": 4}}
        answer = httpx.post(f"{url}/api/chat", json=body, timeout=120)
        assert answer.status_code == 200, answer.text
    assert client.chat.completions.create(model=MODEL, messages=say, max_tokens=2).choices
