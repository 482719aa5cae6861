"""A gateway lollms-server in front of two node lollms-servers, all real processes on loopback.

Every generation type end to end (whole and streamed, the node's media bytes unchanged),
balancing over both nodes, the request id and trace context reaching the node's log, the node
key kept out of the gateway's answers and log, and cancellation travelling to the node.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from typing import Any

import aiohttp
import pytest

from lollms_server.bindings import GENERATION_TYPES
from lollms_server.testing import ServerProcess, backend_unavailable, free_port, lollms_process
from lollms_server.testing.server import input_data, sse_events

from .conftest import ECHO_NODE, Node, start_node

TIMEOUT = aiohttp.ClientTimeout(total=60)


def gateway_config(nodes: tuple[Node, ...], big: Node) -> str:
    """Bindings `n1`, `n2`... for the nodes, `big` for the node whose models need more memory
    than it has, and routes spanning them."""
    lines = []
    for index, node in [*enumerate(nodes, 1), ("-big", big)]:
        lines += [
            f"[bindings.n{index}]",
            'type = "lollms"',
            f'base_url = "{node.url}"',
            f'api_key = "{node.key}"',
            "",
        ]
    lines += [  # the first node again, with a read timeout the slow model overruns
        "[bindings.impatient]",
        'type = "lollms"',
        f'base_url = "{nodes[0].url}"',
        f'api_key = "{nodes[0].key}"',
        "read_timeout_s = 0.3",
        "retries = 0",
        "",
    ]
    lines += [  # a node that is not there, first in an ordered route
        "[bindings.dead]",
        'type = "lollms"',
        f'base_url = "http://127.0.0.1:{free_port()}"',
        "retries = 0",
        "connect_timeout_s = 1.0",
        "",
    ]
    targets = ", ".join(f'"n{i}/echo/slow"' for i in range(1, len(nodes) + 1))
    echo, think = targets.replace("slow", "echo"), targets.replace("slow", "think")
    lines += [
        "[routes]",
        f'"fleet-slow" = {{targets = [{targets}], strategy = "least-busy"}}',
        f'"fleet-room" = {{targets = [{targets}], strategy = "most-room"}}',
        f'"fleet-echo" = {{targets = [{echo}], strategy = "least-busy"}}',
        f'"fleet-think" = {{targets = [{think}], strategy = "most-room"}}',
        f'"fleet-fit" = {{targets = ["n-big/echo/echo", {echo}], strategy = "most-room"}}',
        '"after-dead" = ["dead/echo/echo", "n2/echo/echo"]',
    ]
    return "\n".join(lines) + "\n"


BIG_NODE = ECHO_NODE.format(delay_ms=50, budget="4GiB").replace(
    "[resources]", "model_memory_mb = 8192\n\n[resources]"
)


@pytest.fixture(scope="module")
def big_node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    """An echo node with the most free memory (4 GiB), whose models each need 8 GiB."""
    with ExitStack() as stack:
        try:
            node = start_node(stack, tmp_path_factory.mktemp("big-node"), BIG_NODE, "gw")
        except AssertionError as exc:
            backend_unavailable(request, str(exc))
        yield node


@pytest.fixture(scope="module")
def gateway(
    echo_nodes: tuple[Node, Node], big_node: Node, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The gateway process with both echo nodes and the big one."""
    folder = tmp_path_factory.mktemp("gateway")
    with lollms_process(folder, gateway_config(echo_nodes, big_node)) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for the test."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield session


def body(kind: str, model: str, binding: str | None = None, **extra: Any) -> dict[str, Any]:
    """A lollms `generate` body with the sample media the type needs."""
    prompt = "hello fleet" if kind == "ttt" else "a short test"
    return {
        "input_data": input_data(kind, prompt),
        "binding_name": binding,
        "model_name": model,
        "generation_type": kind,
        "parameters": {"seed": 7, "width": 8, "height": 8},
        **extra,
    }


async def post(
    http: aiohttp.ClientSession, url: str, payload: dict[str, Any], **headers: str
) -> tuple[int, Any]:
    """POST a generate body; the JSON answer, or the SSE events of a stream."""
    auth = {"Authorization": f"Bearer {headers.pop('key')}"} if "key" in headers else {}
    async with http.post(
        f"{url}/api/v1/generate", json=payload, headers={**auth, **headers}
    ) as answer:
        text = await answer.text()
        return answer.status, sse_events(text) if payload.get("stream") else json.loads(text)


def outputs_of(answer: Any, streamed: bool) -> list[dict[str, Any]]:
    """The output items of a whole answer or of a stream's `final` event."""
    if not streamed:
        return list(answer["output"])
    (final,) = [event for event in answer if event["type"] == "final"]
    return list(final["content"])


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("kind", GENERATION_TYPES)
async def test_every_generation_type_passes_through(
    gateway: ServerProcess,
    echo_node: Node,
    http: aiohttp.ClientSession,
    kind: str,
    streamed: bool,
) -> None:
    """The gateway's answer carries the node's own outputs: same types, mime types, bytes."""
    status, through = await post(http, gateway.url, body(kind, "echo/echo", "n1", stream=streamed))
    assert status == 200, through
    direct_status, direct = await post(
        http, echo_node.url, body(kind, "echo", "echo"), key=echo_node.key
    )
    assert direct_status == 200, direct
    got = [(o["type"], o["mime_type"], o["data"]) for o in outputs_of(through, streamed)]
    want = [(o["type"], o["mime_type"], o["data"]) for o in direct["output"]]
    assert got == want and got[0][2], (got, want)
    if streamed:
        assert through[0]["metadata"]["binding"] == "n1"
        assert through[-1]["metadata"]["binding_instance"] == "n1"


async def test_parallel_requests_spread_over_both_nodes(
    gateway: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """least-busy: parallel streams of a slow model land on both nodes."""
    payload = body("ttt", "fleet-slow", stream=True)
    payload["input_data"][0]["data"] = "one two three four five six"
    answers = await asyncio.gather(*(post(http, gateway.url, payload) for _ in range(6)))
    served = []
    for status, events in answers:
        assert status == 200, events
        served.append(events[-1]["metadata"]["binding_instance"])
    assert set(served) == {"n1", "n2"}, served


async def test_most_room_route_picks_the_node_with_most_free_memory(
    gateway: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """most-room: once both nodes reported their free memory, the roomier one (n2) serves."""
    for name in ("n1", "n2"):  # an answer of each node carries its X-Lollms-Free-Memory
        status, answer = await post(http, gateway.url, body("ttt", "echo/echo", name))
        assert status == 200, answer
    for _ in range(3):
        status, answer = await post(http, gateway.url, body("ttt", "fleet-room"))
        assert status == 200, answer
        assert answer["binding_instance"] == "n2"
        assert answer["output"][0]["data"] == "hello fleet"


async def test_least_busy_weighs_the_queue_of_the_requested_model(
    gateway: ServerProcess, echo_nodes: tuple[Node, Node], http: aiohttp.ClientSession
) -> None:
    """n1 runs three `slow` streams, n2 one: each node's answers say so per model; `echo`
    then goes to n1 (no `echo` queued on either: the route's order), `slow` to n2."""
    held = []
    try:
        for node, count in zip(echo_nodes, (3, 1), strict=True):
            for _ in range(count):  # straight to the node: 20 s streams
                payload = body("ttt", "slow", "echo", stream=True)
                payload["input_data"][0]["data"] = " ".join(["word"] * 400)
                auth = {"Authorization": f"Bearer {node.key}"}
                answer = await http.post(f"{node.url}/api/v1/generate", json=payload, headers=auth)
                held.append(answer)
                await answer.content.readline()
        auth = {"Authorization": f"Bearer {echo_nodes[0].key}"}
        async with http.get(f"{echo_nodes[0].url}/api/v1/list_models", headers=auth) as answer:
            assert answer.headers["X-Lollms-Model-Queue-Depth"] == "echo/slow=3"
            assert answer.headers["X-Lollms-Queue-Depth"] == "3"
        assert echo_nodes[0].get("/api/v1/status")["queue_depth"]["echo/slow"] == 3
        for name in ("n1", "n2"):  # fresh figures of each node, from an answer's headers
            status, answer = await post(http, gateway.url, body("ttt", "echo/echo", name))
            assert status == 200, answer
        for _ in range(3):
            status, answer = await post(http, gateway.url, body("ttt", "fleet-echo"))
            assert status == 200, answer
            assert answer["binding_instance"] == "n1"
        status, answer = await post(http, gateway.url, body("ttt", "fleet-slow"))
        assert status == 200, answer
        assert answer["binding_instance"] == "n2"
    finally:
        for answer in held:
            answer.close()


async def test_most_room_prefers_the_node_that_has_the_model_loaded(
    gateway: ServerProcess, echo_nodes: tuple[Node, Node], http: aiohttp.ClientSession
) -> None:
    """`echo/think` loaded on n1 only: n1 serves the most-room route although n2 has more
    free memory (2 GiB against 1)."""
    for name in ("n1", "n2"):
        if "echo/think" in echo_nodes[int(name[1]) - 1].get("/api/v1/status")["loaded"]:
            unload = {"binding_name": name, "model_name": "echo/think"}
            async with http.post(f"{gateway.url}/api/v1/unload_model", json=unload) as answer:
                assert answer.status == 200, await answer.text()
    load = {"binding_name": "n1", "model_name": "echo/think"}
    async with http.post(f"{gateway.url}/api/v1/load_model", json=load) as answer:
        assert answer.status == 200, await answer.text()
    try:
        status, answer = await post(http, gateway.url, body("ttt", "echo/echo", "n2"))
        assert status == 200, answer  # n2's free memory is fresh on the gateway
        for _ in range(3):
            status, answer = await post(http, gateway.url, body("ttt", "fleet-think"))
            assert status == 200, answer
            assert answer["binding_instance"] == "n1"
        assert "echo/think" not in echo_nodes[1].get("/api/v1/status")["loaded"]
    finally:
        async with http.post(f"{gateway.url}/api/v1/unload_model", json=load) as answer:
            assert answer.status == 200, await answer.text()


async def test_most_room_passes_over_a_node_the_model_does_not_fit(
    gateway: ServerProcess, big_node: Node, http: aiohttp.ClientSession
) -> None:
    """The big node has the most free memory but not the 8 GiB its `echo` needs: the route
    picks n2 (2 GiB free, `echo` needs nothing) and never asks the big node."""
    for name in ("n-big", "n1", "n2"):  # each node's free memory and model sizes, fresh
        async with http.get(f"{gateway.url}/api/v1/list_available_models/{name}") as answer:
            assert answer.status == 200, await answer.text()
    for attempt in range(3):
        request_id = f"fit-check-{attempt}"
        headers = {"X-Request-Id": request_id}
        status, answer = await post(http, gateway.url, body("ttt", "fleet-fit"), **headers)
        assert status == 200, answer
        assert answer["binding_instance"] == "n2"
        assert request_id not in big_node.server.log()


async def test_node_reports_load_in_headers_and_status(echo_node: Node) -> None:
    """A node's answers carry its queue depth and free memory; /api/v1/status details them."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        auth = {"Authorization": f"Bearer {echo_node.key}"}
        async with http.get(f"{echo_node.url}/api/v1/list_models", headers=auth) as answer:
            assert answer.headers["X-Lollms-Queue-Depth"].isdigit()
            assert int(answer.headers["X-Lollms-Free-Memory"]) == 2**30
    status = echo_node.get("/api/v1/status")
    assert status["free_memory_bytes"] == 2**30
    assert status["devices"][0]["name"] == "cpu" and isinstance(status["queue_depth"], dict)


async def test_request_id_and_traceparent_reach_the_node(
    gateway: ServerProcess, echo_node: Node, http: aiohttp.ClientSession
) -> None:
    """The node logs the gateway request's id; the traceparent is passed on with it."""
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    headers = {"X-Request-Id": "fleet-trace-42", "traceparent": trace}
    status, answer = await post(http, gateway.url, body("ttt", "echo/echo", "n1"), **headers)
    assert status == 200, answer
    assert answer["request_id"] == "fleet-trace-42"
    for _ in range(50):
        if "fleet-trace-42" in echo_node.server.log():
            break
        await asyncio.sleep(0.1)
    line = next(line for line in echo_node.server.log().splitlines() if "fleet-trace-42" in line)
    assert trace in line


async def test_node_key_never_shown(
    gateway: ServerProcess, echo_nodes: tuple[Node, Node], http: aiohttp.ClientSession
) -> None:
    """Listings, pages and the log of the gateway never show a node key."""
    pages = []
    for path in ("/api/v1/list_bindings", "/api/v1/list_active_bindings", "/admin/bindings", "/"):
        async with http.get(f"{gateway.url}{path}") as answer:
            pages.append(await answer.text())
    async with http.get(f"{gateway.url}/api/v1/list_bindings") as answer:
        listing = await answer.json()
    assert listing["binding_instances"]["n1"]["settings"]["api_key"] == "***"
    for node in echo_nodes:
        assert all(node.key not in page for page in pages)
        assert node.key not in gateway.log()


async def test_models_listed_with_node_metadata(
    gateway: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """The gateway lists each node's models with their metadata, named after the node's."""
    async with http.get(f"{gateway.url}/api/v1/list_available_models/n2") as answer:
        listing = await answer.json()
    assert answer.status == 200, listing
    models = {m["name"]: m for m in listing["models"]}
    assert {"echo/echo", "echo/slow"} <= set(models)
    echo = models["echo/echo"]
    assert echo["family"] == "echo" and echo["context_length"] == 4096
    assert "tti" in echo["capabilities"] and echo["details"]["node_instance"] == "echo"


async def test_cancellation_reaches_the_node(
    gateway: ServerProcess, echo_node: Node, http: aiohttp.ClientSession
) -> None:
    """A client that leaves the gateway mid-stream stops the generation on the node."""
    payload = body("ttt", "echo/slow", "n1", stream=True)
    payload["input_data"][0]["data"] = " ".join(["word"] * 400)  # 20 s at 50 ms a token

    def running() -> int:
        depths = echo_node.get("/api/v1/status")["queue_depth"]
        return int(depths.get("echo/slow", 0))

    before = running()
    answer = await http.post(f"{gateway.url}/api/v1/generate", json=payload)
    assert answer.status == 200
    await answer.content.readline()  # the stream is flowing
    for _ in range(50):
        if running() > before:
            break
        await asyncio.sleep(0.1)
    assert running() == before + 1
    answer.close()  # the client leaves
    for _ in range(100):  # 10 s, half the generation's own length
        if running() == before:
            break
        await asyncio.sleep(0.1)
    assert running() == before


async def test_load_through_gateway_and_dashboard_shows_each_node(
    gateway: ServerProcess, echo_nodes: tuple[Node, Node], http: aiohttp.ClientSession
) -> None:
    """A load through the gateway loads on the node; the dashboard's fleet panel shows each
    node's health, loaded models, queue depth and memory."""
    load = {"binding_name": "n1", "model_name": "echo/think"}
    async with http.post(f"{gateway.url}/api/v1/load_model", json=load) as answer:
        assert answer.status == 200, await answer.text()
    assert "echo/think" in echo_nodes[0].get("/api/v1/status")["loaded"]
    async with http.get(f"{gateway.url}/") as answer:
        page = await answer.text()
    assert answer.status == 200
    fleet = page[page.index('id="fleet"') :]
    fleet = fleet[: fleet.index("</section>")]
    for node in echo_nodes:
        assert node.url in fleet
    assert "echo/think" in fleet and "cpu:" in fleet and "free" in fleet
    unload = {"binding_name": "n1", "model_name": "echo/think"}
    async with http.post(f"{gateway.url}/api/v1/unload_model", json=unload) as answer:
        assert answer.status == 200, await answer.text()
    assert "echo/think" not in echo_nodes[0].get("/api/v1/status")["loaded"]


@pytest.mark.parametrize(
    ("instance", "model", "kind", "audio", "status", "error_type"),
    [
        ("n1", "echo/nope", "ttt", None, 404, "model_not_found"),
        ("n1", "echo/echo", "audio2audio", b"not a wav file", 415, "unsupported_media_type"),
        ("n1", "echo/fail", "tti", None, 503, "backend_unavailable"),
        ("impatient", "echo/slow", "ttt", None, 504, "backend_timeout"),
    ],
    ids=["404", "415", "503", "504"],
)
async def test_node_errors_map_to_the_taxonomy_naming_the_instance(
    gateway: ServerProcess,
    http: aiohttp.ClientSession,
    instance: str,
    model: str,
    kind: str,
    audio: bytes | None,
    status: int,
    error_type: str,
) -> None:
    """The node's 4xx stay the same 4xx; its 5xx and a timeout are ours, naming the instance."""
    payload = body(kind, model, instance)
    if audio is not None:
        payload["input_data"][1]["data"] = base64.b64encode(audio).decode()
    if instance == "impatient":
        payload["input_data"][0]["data"] = " ".join(["word"] * 40)  # 2 s at 50 ms a token
    got, answer = await post(http, gateway.url, payload)
    assert got == status, answer
    assert answer["error"]["type"] == error_type and answer["error"]["binding"] == instance
    assert instance in answer["error"]["message"]


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_a_binding_the_node_lacks_is_a_404_naming_node_and_instance(
    gateway: ServerProcess, http: aiohttp.ClientSession, streamed: bool
) -> None:
    """`n1/nope/echo`: the node has no instance `nope`. Its 404 says so; the gateway answered
    501 `not_supported`, "node 'n1' has no /api/v1/load_model (404)", as if the node lacked
    the route, which hid the typo from the client."""
    payload = body("ttt", "nope/echo", "n1", stream=streamed)
    async with http.post(f"{gateway.url}/api/v1/generate", json=payload) as answer:
        error = (await answer.json())["error"]
    assert answer.status == 404, error
    assert error["type"] == "model_not_found" and error["binding"] == "n1", error
    assert (
        "node 'n1'" in error["message"] and "no binding instance named 'nope'" in error["message"]
    )


async def test_a_model_named_as_the_node_names_it_is_a_404_naming_it(
    gateway: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """`echo/echo` (the node's name, without the gateway's instance) on a gateway without
    defaults was a 400 "no binding given and no default configured for 'ttt'", though the
    client named a model; it is a 404 naming the model and the `<instance>/<model>` form."""
    chat = {"model": "echo/echo", "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(f"{gateway.url}/v1/chat/completions", json=chat) as answer:
        error = (await answer.json())["error"]
    assert answer.status == 404, error
    assert error["code"] == "model_not_found" and error["param"] == "model", error
    assert "'echo/echo'" in error["message"] and "<instance>/<model>" in error["message"]


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_before_the_first_byte_the_next_target_serves(
    gateway: ServerProcess, http: aiohttp.ClientSession, streamed: bool
) -> None:
    """The route's first node cannot be reached: the next one serves, whole and streamed."""
    status, answer = await post(http, gateway.url, body("ttt", "after-dead", stream=streamed))
    assert status == 200, answer
    final = answer[-1]["metadata"] if streamed else answer
    assert final["binding_instance"] == "n2"
    assert outputs_of(answer, streamed)[0]["data"] == "hello fleet"


async def test_node_error_mid_stream_is_an_error_event_naming_the_instance(
    gateway: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """The node's own error event after the first token reaches the client naming our instance."""
    status, events = await post(http, gateway.url, body("ttt", "echo/fail", "n1", stream=True))
    assert status == 200, events
    assert [e["type"] for e in events if e["type"] in ("chunk", "error")] == ["chunk", "error"]
    (error,) = [e for e in events if e["type"] == "error"]
    assert error["metadata"]["error"]["binding"] == "n1"
    assert "node 'n1'" in error["content"] and "fails on purpose" in error["content"]
    assert error["metadata"]["error"]["type"] == "backend_unavailable"


async def test_cancellation_of_a_whole_generation_reaches_the_node(
    gateway: ServerProcess, echo_node: Node
) -> None:
    """A client that gives up on a whole (non-streamed) generation stops it on the node too."""
    payload = body("ttt", "echo/slow", "n1")
    payload["input_data"][0]["data"] = " ".join(["word"] * 400)  # 20 s at 50 ms a token

    def running() -> int:
        return int(echo_node.get("/api/v1/status")["queue_depth"].get("echo/slow", 0))

    before = running()
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        call = asyncio.ensure_future(http.post(f"{gateway.url}/api/v1/generate", json=payload))
        for _ in range(50):
            if running() > before:
                break
            await asyncio.sleep(0.1)
        assert running() == before + 1
        call.cancel()  # the client gives up: its connection closes
        with pytest.raises(asyncio.CancelledError):
            await call
    for _ in range(100):  # 10 s, half the generation's own length
        if running() == before:
            break
        await asyncio.sleep(0.1)
    assert running() == before
