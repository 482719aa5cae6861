"""Distributed tracing (issue 18) against real server processes and a real OTLP receiver.

Two servers run for the module, both exporting spans over OTLP/HTTP to a receiver the test
runs (`lollms_server.testing.otlp`, which decodes the protobuf): `node`, a plain echo server,
and `gateway`, whose `paid` instance is the OpenAI binding in front of the node's `/v1` and
which needs a key. One request to the gateway must come out as one trace across both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lollms_server.testing.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver
from lollms_server.testing.process import SERVER_COMMAND, ServerProcess, lollms_process, server_env

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_PARENT = "00f067aa0ba902b7"
EXPORT_TOKEN = "otlp-token-8f3c1d"  # sent to the collector only, from the environment
WEATHER = """
import logging

from lollms_server.service.functions import function


@function
def get_weather(city: str) -> dict:
    \"\"\"Current weather of a city.\"\"\"
    logging.getLogger("weather").warning("looking up %s", city)
    return {"city": city, "temp": 21}
"""


@dataclass
class Chain:
    """The receiver, the two servers and the gateway's key."""

    receiver: OtlpReceiver
    node: ServerProcess
    gateway: ServerProcess
    key: str


def tracing_table(receiver: OtlpReceiver, service: str) -> str:
    """The `[tracing]` section of one server."""
    return textwrap.dedent(f"""
        [tracing]
        enabled = true
        endpoint = "{receiver.endpoint}"
        service_name = "{service}"
        sample_ratio = 1.0
    """)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """Start the receiver, the node, then the gateway in front of it; a gateway key."""
    tmp = tmp_path_factory.mktemp("tracing")
    with pytest.MonkeyPatch.context() as env, otlp_receiver() as receiver:
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export batches quickly (default 5 s)
        env.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-collector-token={EXPORT_TOKEN}")
        node_config = '[bindings.echo]\ntype = "echo"\n[defaults]\nttt = "echo"\n'
        gateway_config = textwrap.dedent("""
            [bindings.paid]
            type = "openai"
            base_url = "@NODE@/v1"
            models = ["echo/echo"]
            capabilities = ["ttt", "stream"]
            [defaults]
            ttt = "paid"
            [security]
            local_access = false
        """)
        functions = tmp / "node" / "data" / "functions"
        functions.mkdir(parents=True)
        (functions / "tools.py").write_text(WEATHER, encoding="utf-8")
        with lollms_process(tmp / "node", node_config + tracing_table(receiver, "node")) as node:
            config = gateway_config.replace("@NODE@", node.url)
            with lollms_process(tmp / "gateway", config + tracing_table(receiver, "gw")) as gw:
                yield Chain(receiver, node, gw, make_key(tmp / "gateway"))


def make_key(folder: Path) -> str:
    """A user key of the server in `folder`, made with the CLI."""
    done = subprocess.run(
        [*SERVER_COMMAND, "--config", str(folder / "lollms.toml"), "keys", "create", "--name", "t"],
        env=server_env(folder / "data"), capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def chat(chain: Chain, headers: dict[str, str], *, stream: bool = False) -> bytes:
    """One chat completion through the gateway with the key and `headers`."""
    body = {"model": "echo/echo", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    request = urllib.request.Request(
        chain.gateway.url + "/v1/chat/completions",
        json.dumps(body).encode(),
        {"Authorization": f"Bearer {chain.key}", "Content-Type": "application/json", **headers},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return bytes(response.read())


def trace_of(chain: Chain, trace_id: str) -> list[ReceivedSpan]:
    """The spans of `trace_id` once both server spans (gateway and node) are in."""

    def complete(spans: list[ReceivedSpan]) -> bool:
        servers = {s.service for s in spans if s.trace_id == trace_id and s.kind == "server"}
        return servers == {"gw", "node"}

    return [s for s in chain.receiver.wait_for(complete) if s.trace_id == trace_id]


def one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    """The single span of `service` called `name`."""
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, f"{service}:{name}: {[(s.service, s.name) for s in spans]}"
    return found[0]


def test_one_trace_across_gateway_and_node(chain: Chain) -> None:
    """The client's traceparent is honoured: every span of both servers is in its trace, the
    gateway's request span is the child of the client's span, the node's request span is the
    child of the gateway binding's client span, and the binding call hangs under the request."""
    chat(chain, {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01", "X-Request-Id": "tr-1"})
    spans = trace_of(chain, CLIENT_TRACE)
    gw_request = one(spans, "gw", "POST /v1/chat/completions")
    assert gw_request.kind == "server"
    assert gw_request.parent_id == CLIENT_PARENT
    by_id = {s.span_id: s for s in spans}
    upstream_call = one(spans, "gw", "POST /chat/completions")
    assert upstream_call.kind == "client"
    binding_call = by_id[upstream_call.parent_id]
    assert binding_call.name == "binding.generate"
    assert binding_call.attributes["lollms.instance"] == "paid"
    assert binding_call.attributes["lollms.model"] == "echo/echo"
    assert by_id[binding_call.parent_id].span_id == gw_request.span_id
    node_request = one(spans, "node", "POST /v1/chat/completions")
    assert node_request.kind == "server"
    assert node_request.parent_id == upstream_call.span_id  # the hop: client span -> server span
    assert one(spans, "node", "binding.generate").attributes["lollms.instance"] == "echo"
    for name in ("auth", "queue.wait"):
        assert by_id[one(spans, "gw", name).parent_id] is not None


def test_request_id_and_key_id_on_spans_and_logs(chain: Chain) -> None:
    """The request id rides on the spans of both servers (the node got it from the gateway)
    and on their JSON request log lines with the trace id; the key id is there, the key never."""
    trace_id = "5" * 32
    chat(chain, {"traceparent": f"00-{trace_id}-{CLIENT_PARENT}-01", "X-Request-Id": "tr-logs"})
    spans = trace_of(chain, trace_id)
    key_id, secret = chain.key.split("_", 2)[1:]
    gw_request = one(spans, "gw", "POST /v1/chat/completions")
    assert gw_request.attributes["lollms.request_id"] == "tr-logs"
    assert gw_request.attributes["lollms.key_id"] == key_id
    assert gw_request.attributes["http.response.status_code"] == 200
    assert one(spans, "gw", "binding.generate").attributes["lollms.key_id"] == key_id
    assert one(spans, "node", "POST /v1/chat/completions").attributes["lollms.request_id"] == (
        "tr-logs"
    )
    every_value = json.dumps([s.attributes for s in chain.receiver.spans])
    assert secret not in every_value and chain.key not in every_value
    for server in (chain.gateway, chain.node):
        lines = [json.loads(x) for x in server.log().splitlines() if x.startswith("{")]
        logged = [x for x in lines if x.get("request_id") == "tr-logs" and "status" in x]
        assert logged and logged[0]["trace_id"] == trace_id, server.log()[-2000:]
        assert secret not in server.log()
    assert EXPORT_TOKEN not in chain.gateway.log() + chain.node.log()


def test_stream_records_time_to_first_token(chain: Chain) -> None:
    """A streamed answer's binding span carries the time to the first token and its event."""
    trace_id = "6" * 32
    chat(chain, {"traceparent": f"00-{trace_id}-{CLIENT_PARENT}-01"}, stream=True)
    spans = trace_of(chain, trace_id)
    streamed = one(spans, "gw", "binding.stream")
    assert streamed.attributes["lollms.time_to_first_token_ms"] >= 0
    assert "first_token" in streamed.events
    assert one(spans, "node", "binding.stream").attributes["lollms.instance"] == "echo"


def test_tool_loop_steps_and_calls(chain: Chain) -> None:
    """The server-side function-calling loop: one span per step under the request, the
    function call inside the step that asked for it, a binding call in each step; a line the
    function logs carries the request id and trace id."""
    trace_id = "7" * 32
    prompt = 'CALL get_weather {"city": "Paris"}'
    body = {"functions": ["get_weather"], "input_data": [{"type": "text", "data": prompt}]}
    request = urllib.request.Request(
        chain.node.url + "/api/v1/generate",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "traceparent": f"00-{trace_id}-{CLIENT_PARENT}-01"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert "21" in json.loads(response.read())["output"][0]["data"]

    def served(spans: list[ReceivedSpan]) -> bool:
        return any(s.trace_id == trace_id and s.kind == "server" for s in spans)

    spans = [s for s in chain.receiver.wait_for(served) if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in spans}
    request_span = one(spans, "node", "POST /api/v1/generate")
    steps = sorted((s for s in spans if s.name == "tool_loop.step"),
                   key=lambda s: s.attributes["lollms.step"])  # fmt: skip
    assert [s.attributes["lollms.step"] for s in steps] == [1, 2]
    assert all(s.parent_id == request_span.span_id for s in steps)
    call = one(spans, "node", "function.call")
    assert call.attributes["lollms.function"] == "get_weather"
    assert call.parent_id == steps[0].span_id
    binding_steps = [by_id[s.parent_id] for s in spans if s.name.startswith("binding.")]
    assert sorted(s.attributes["lollms.step"] for s in binding_steps) == [1, 2]
    logged = [json.loads(x) for x in chain.node.log().splitlines() if "looking up Paris" in x]
    assert logged[-1]["trace_id"] == trace_id  # any line logged during the request names it
    assert logged[-1]["request_id"] == request_span.attributes["lollms.request_id"]


def test_new_trace_without_a_valid_traceparent_still_spans_both(chain: Chain) -> None:
    """A malformed caller's trace context is ignored: the gateway starts a trace (a root
    span) and the node joins it."""
    chain.receiver.clear()
    chat(chain, {"X-Request-Id": "tr-fresh", "traceparent": f"00-{'g' * 32}-{CLIENT_PARENT}-01"})

    def both(spans: list[ReceivedSpan]) -> bool:
        return {s.service for s in spans if s.attributes.get("lollms.request_id") == "tr-fresh"
                and s.kind == "server"} == {"gw", "node"}  # fmt: skip

    spans = chain.receiver.wait_for(both)
    gw_request = one(spans, "gw", "POST /v1/chat/completions")
    assert gw_request.parent_id == ""  # a root span
    node_request = one(spans, "node", "POST /v1/chat/completions")
    assert node_request.trace_id == gw_request.trace_id


def test_exporter_headers_come_from_the_environment(chain: Chain) -> None:
    """The collector got the header named in OTEL_EXPORTER_OTLP_HEADERS on every export."""
    chat(chain, {})
    chain.receiver.wait_for(lambda spans: bool(spans))
    with chain.receiver.lock:
        tokens = {h.get("x-collector-token") for h in chain.receiver.headers}
    assert tokens == {EXPORT_TOKEN}


PROBE = """
import asyncio, sys
from aiohttp.test_utils import TestClient, TestServer
from lollms_server.app import create_app
from lollms_server.config import parse_config

async def main():
    tracing = {"enabled": sys.argv[2] == "on", "export_timeout_s": 0.5,
               "endpoint": "http://127.0.0.1:9/v1/traces"}  # nothing listens there
    raw = {"server": {"data_dir": sys.argv[1]}, "bindings": {"echo": {"type": "echo"}},
           "defaults": {"ttt": "echo"}, "tracing": tracing}
    async with TestClient(TestServer(create_app(parse_config(raw)))) as client:
        body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
        answer = await client.post("/v1/chat/completions", json=body)
        assert answer.status == 200, await answer.text()
    print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))

asyncio.run(main())
"""


def probe(tmp_path: Path, mode: str, block_otel: bool = False) -> subprocess.CompletedProcess[str]:
    """Run PROBE in a fresh interpreter (optionally one where OpenTelemetry cannot import)."""
    code = ("import sys; sys.modules['opentelemetry'] = None\n" if block_otel else "") + PROBE
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOLLMS_", "OTEL_"))}
    return subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), mode],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_tracing_off_imports_nothing_of_opentelemetry(tmp_path: Path) -> None:
    """Off (the default), a served request leaves OpenTelemetry unimported."""
    done = probe(tmp_path, "off")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_collector_down_does_not_fail_requests(tmp_path: Path) -> None:
    """On, with nothing listening at the endpoint: the request is answered (export runs in
    the background), and OpenTelemetry is loaded."""
    done = probe(tmp_path, "on")
    assert done.returncode == 0, done.stderr
    assert "opentelemetry.sdk.trace" in done.stdout


def test_enabled_without_the_extra_names_it(tmp_path: Path) -> None:
    """`enabled = true` where OpenTelemetry is missing fails at start, naming the extra."""
    done = probe(tmp_path, "on", block_otel=True)
    assert done.returncode != 0
    assert "pip install 'lollms-server[tracing]'" in done.stderr


def test_cli_refuses_to_start_without_the_extra(tmp_path: Path) -> None:
    """The same through `lollms-server`: exit status 2 and the message, no traceback."""
    config = tmp_path / "lollms.toml"
    config.write_text("[server]\nport = 0\n[tracing]\nenabled = true\n", encoding="utf-8")
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from lollms_server.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "--config", str(config)],
        capture_output=True, text=True, timeout=120, env=server_env(tmp_path / "data"),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "lollms-server[tracing]" in done.stderr and "Traceback" not in done.stderr
