"""A node's model whose own name has a slash (`org/tiny`, as a models folder of HF-style
sub-folders names them), asked for by that bare name: the node's instance listing it serves.
It was split at its first slash (binding `org`, model `tiny`): a fleet route naming it by its
bare name listed the node, then every request was the node's 404."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from lollms_llamacpp.tiny_gguf import write_tiny_gguf

from lollms_server.testing import ServerProcess, lollms_process

NODE = """\
[bindings.llamacpp]
type = "llamacpp"
models_folders = ["{folder}"]
n_ctx = 256
n_parallel = 1
n_threads = 1
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A gateway with a fleet route over a llama.cpp node serving `org/tiny`."""
    models: Path = tmp_path_factory.mktemp("models")
    (models / "org").mkdir()
    write_tiny_gguf(models / "org" / "tiny.gguf", seed=0)
    with lollms_process(tmp_path_factory.mktemp("node"), NODE.format(folder=models)) as node:
        config = f'[bindings.gpu1]\ntype = "lollms"\nbase_url = "{node.url}"\n\n[routes]\n'
        config += '"tiny" = {fleet = true, model = "org/tiny"}\n'
        with lollms_process(tmp_path_factory.mktemp("gw"), config) as gateway:
            yield gateway


@pytest.mark.parametrize("model", ["gpu1/org/tiny", "tiny", "gpu1/llamacpp/org/tiny"])
async def test_a_bare_node_model_name_with_a_slash_is_served(
    gateway: ServerProcess, model: str
) -> None:
    """The route, the node instance with the bare name, and the full name: each generates
    there and tokenizes there."""
    chat = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        async with http.post(f"{gateway.url}/v1/chat/completions", json=chat) as answer:
            body = await answer.json()
        assert answer.status == 200, body
        assert body["model"] in ("gpu1/org/tiny", "gpu1/llamacpp/org/tiny"), body
        tokenize = {"model_name": model, "text": "hi"}
        async with http.post(f"{gateway.url}/api/v1/tokenize", json=tokenize) as answer:
            tokens = await answer.json()
        assert answer.status == 200 and tokens["count"] > 0, tokens
