"""Functions: schemas from hints, folders and plugins, unsafe gating, the calling loop."""

from __future__ import annotations

import asyncio
import enum
import json
import threading
from pathlib import Path
from typing import Any, Literal

import pytest
from aiohttp.test_utils import TestClient
from conftest import MakeClient, MakeConfig
from prometheus_client.parser import text_string_to_metric_families

from lollms_server.bindings import ChatMessage
from lollms_server.config import Config
from lollms_server.keys import KEYSTORE
from lollms_server.service import admin_threads
from lollms_server.service.function_schema import parameters_schema
from lollms_server.service.functions import FunctionRegistry, function

Client = TestClient[Any, Any]

FUNCTIONS_FILE = '''
import asyncio
import time
from lollms_server.service.functions import function

CALLS = []


@function  # bare, as the README writes it
def get_weather(city: str, unit: str = "C") -> dict:
    """Current weather of a city.

    Args:
        city: the city name
        unit: C or F
    """
    CALLS.append(city)
    return {"city": city, "temp": 21, "unit": unit}


@function()
def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)


@function(timeout_s=0.2)
def sleepy() -> str:
    """Sleeps past its limit."""
    time.sleep(1)
    return "late"


@function
def tangled() -> dict:
    """Returns what JSON cannot hold."""
    loop = {}
    loop["self"] = loop
    return loop


@function
def huge() -> str:
    """Returns more text than a model should be sent."""
    return "x" * 200_000


@function
def not_a_number() -> dict:
    """Returns NaN, which JSON does not have."""
    return {"value": float("nan")}


@function
async def gives_up() -> str:
    """Lets the cancellation of its own work escape."""
    raise asyncio.CancelledError("its own work was cancelled")


@function
def gives_up_sync() -> str:
    """The same, from a worker thread."""
    raise asyncio.CancelledError("its own work was cancelled")


@function
async def slow(seconds: float) -> str:
    """Takes its time."""
    await asyncio.sleep(seconds)
    return "slow done"


@function(unsafe=True)
def delete_everything(path: str) -> str:
    """Pretends to touch the file system."""
    return "deleted " + path


def not_marked() -> str:
    return "never exposed"
'''


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def described(
    name: str,
    count: int,
    ratio: float = 0.5,
    tags: list[str] | None = None,
    mode: Literal["fast", "slow"] = "fast",
    color: Color = Color.RED,
    flags: dict[str, bool] | None = None,
) -> str:
    """Do a described thing.

    :param name: who it is for
    :param count: how many times
    """
    return name


def test_schema_from_hints_and_docstring() -> None:
    summary, schema = parameters_schema(described)
    assert summary == "Do a described thing."
    props = schema["properties"]
    assert schema["required"] == ["name", "count"] and schema["additionalProperties"] is False
    assert props["name"] == {"type": "string", "description": "who it is for"}
    assert props["count"]["type"] == "integer" and props["ratio"]["default"] == 0.5
    assert props["tags"]["anyOf"] == [
        {"type": "array", "items": {"type": "string"}},
        {"type": "null"},
    ]
    assert props["mode"]["enum"] == ["fast", "slow"] and props["color"]["enum"] == ["red", "blue"]
    assert props["flags"]["anyOf"][0] == {
        "type": "object",
        "additionalProperties": {"type": "boolean"},
    }


async def test_arguments_are_validated_before_the_call() -> None:
    calls: list[int] = []

    @function(parameters={"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}},
                          "required": ["n"]})  # fmt: skip
    def count(n: int) -> int:
        calls.append(n)
        return n * 2

    registry = FunctionRegistry()
    registry.add_callables([count], "test")
    (fn,) = registry.usable(["count"])
    assert (await registry.run(fn, '{"n": 3}')).result == "6"
    bad = await registry.run(fn, {"n": 0})
    assert bad.error is not None and "minimum" in bad.error
    assert "valid JSON" in ((await registry.run(fn, "{nope")).error or "")
    assert "required" in ((await registry.run(fn, {})).error or "")
    assert calls == [3]


async def test_stuck_sync_calls_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    @function(timeout_s=0.1)
    def stuck() -> str:
        release.wait(10)
        return "late"

    monkeypatch.setattr(admin_threads, "_slots", threading.BoundedSemaphore(1))
    monkeypatch.setattr(admin_threads, "MAX_THREADS", 1)
    registry = FunctionRegistry()
    registry.add_callables([stuck], "test")
    (fn,) = registry.usable(["stuck"])
    assert (await registry.run(fn, {})).error == "no result within 0.1s"
    refused = (await registry.run(fn, {})).error or ""
    assert "1 sync function or script calls are still running" in refused
    release.set()
    await asyncio.sleep(0.2)  # the stuck thread returns and frees its slot
    assert (await registry.run(fn, {})).result == "late"


def functions_config(make_config: MakeConfig, **functions: Any) -> Config:
    config = make_config()
    (config.functions_dir / "tools.py").write_text(FUNCTIONS_FILE)
    (config.functions_dir / "broken.py").write_text("import not_a_module_anywhere\n")
    for key, value in functions.items():
        setattr(config.functions, key, value)
    return config


@pytest.fixture
async def fclient(make_client: MakeClient, make_config: MakeConfig) -> Client:
    """A client whose data dir has a functions file (and a broken one)."""
    return await make_client(functions_config(make_config, max_steps=3))


def calls_of(client: Client) -> list[str]:
    import sys

    return sys.modules["lollms_functions.functions.tools"].CALLS  # type: ignore[no-any-return]


async def run_loop(client: Client, prompt: str, **body: Any) -> tuple[int, Any]:
    body = {"functions": ["get_weather", "explode", "sleepy"], **body}
    body["input_data"] = [{"type": "text", "data": prompt}]
    response = await client.post("/api/v1/generate", json=body)
    if body.get("stream"):
        text = await response.text()
        return response.status, [
            json.loads(x[6:]) for x in text.splitlines() if x.startswith("data: ")
        ]
    return response.status, await response.json()


async def test_listing_folder_problems_and_unsafe_flags(fclient: Client) -> None:
    names = (await (await fclient.get("/api/v1/list_functions")).json())["functions"]
    body = await (await fclient.get("/api/v1/list_functions?format=lollms-server")).json()
    listed = body["functions"]
    assert names == sorted(listed)  # upstream's shape: the names
    assert set(listed) == {
        "get_weather",
        "explode",
        "sleepy",
        "tangled",
        "not_a_number",
        "huge",
        "gives_up",
        "gives_up_sync",
        "slow",
        "delete_everything",
    }
    weather = listed["get_weather"]
    assert weather["description"] == "Current weather of a city."
    assert weather["parameters"]["properties"]["city"]["description"] == "the city name"
    assert listed["delete_everything"]["unsafe"] and not listed["delete_everything"]["enabled"]
    assert any("broken.py" in p and "ModuleNotFoundError" in p for p in body["problems"])
    assert not any("tools.py" in p for p in body["problems"])
    page = await fclient.get("/functions")
    assert "unsafe, off" in await page.text()


async def test_loop_runs_the_function_and_feeds_the_result_back(fclient: Client) -> None:
    status, body = await run_loop(fclient, 'CALL get_weather {"city": "Paris"}')
    assert status == 200, body
    assert body["finish_reason"] == "stop"
    assert (
        body["output"][0]["data"] == 'Function results: {"city": "Paris", "temp": 21, "unit": "C"}'
    )
    first, second = body["steps"]
    (call,) = first["function_calls"]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}
    assert json.loads(call["result"])["temp"] == 21 and call["error"] is None
    assert second["function_calls"] == [] and second["text"] == body["output"][0]["data"]
    assert calls_of(fclient) == ["Paris"]


async def test_loop_streams_function_call_and_info_events(fclient: Client) -> None:
    prompt = 'CALL get_weather {"city": "Oslo"}\nCALL get_weather {"city": "Rome"}'
    status, events = await run_loop(fclient, prompt, stream=True)
    assert status == 200
    kinds = [e["type"] for e in events]
    assert kinds.count("function_call") == 2 and kinds[-1] == "final"
    assert kinds.index("function_call") < kinds.index("chunk")
    calls = [e["content"] for e in events if e["type"] == "function_call"]
    assert [json.loads(c["arguments"])["city"] for c in calls] == ["Oslo", "Rome"]
    results = [e["metadata"] for e in events if e["type"] == "info" and "function" in e["metadata"]]
    assert [json.loads(r["result"])["city"] for r in results] == ["Oslo", "Rome"]
    final = events[-1]["metadata"]
    assert "Oslo" in final["output"][0]["data"] and "Rome" in final["output"][0]["data"]
    assert len(final["steps"]) == 2


async def test_invalid_arguments_are_refused_with_the_reason_fed_back(fclient: Client) -> None:
    status, body = await run_loop(fclient, 'CALL get_weather {"town": "Paris"}')
    assert status == 200
    (call,) = body["steps"][0]["function_calls"]
    assert call["result"] is None and "invalid arguments" in call["error"]
    assert "'city' is a required property" in call["error"]
    assert "'city' is a required property" in body["output"][0]["data"]  # the model read why
    assert calls_of(fclient) == []


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ('CALL explode {"reason": "boom"}', "RuntimeError: boom"),
        ("CALL sleepy {}", "no result within 0.2s"),
        ("CALL not_offered {}", "no function named 'not_offered' was offered"),
        ("CALL get_weather [1, 2]", "arguments must be a JSON object"),
        ("CALL tangled {}", "the result is not JSON: Circular reference detected"),
        ("CALL not_a_number {}", "the result is not JSON: Out of range float values"),
        ("CALL gives_up {}", "CancelledError: its own work was cancelled"),
        ("CALL gives_up_sync {}", "CancelledError: its own work was cancelled"),
        ("CALL huge {}", "the result is 200,000 characters, over the limit of 65,536"),
    ],
)
async def test_failures_become_tool_results(fclient: Client, prompt: str, expected: str) -> None:
    offered = ["explode", "sleepy", "tangled", "not_a_number", "gives_up", "gives_up_sync", "huge"]
    status, body = await run_loop(fclient, prompt, functions=["get_weather", *offered])
    assert status == 200, body
    assert expected in body["steps"][0]["function_calls"][0]["error"]
    assert expected in body["output"][0]["data"]


async def test_step_limit_holds(fclient: Client) -> None:
    status, body = await run_loop(fclient, 'LOOP\nCALL get_weather {"city": "Lima"}')
    assert status == 200
    assert body["finish_reason"] == "max_steps" and len(body["steps"]) == 3
    assert calls_of(fclient) == ["Lima"] * 3
    status, body = await run_loop(
        fclient, 'LOOP\nCALL get_weather {"city": "Kiev"}', parameters={"max_steps": 2}
    )
    assert len(body["steps"]) == 2 and calls_of(fclient).count("Kiev") == 2
    status, body = await run_loop(fclient, "CALL get_weather {}", parameters={"max_steps": 0})
    assert status == 422


async def test_request_errors(fclient: Client) -> None:
    status, body = await run_loop(fclient, "x", functions=["nope"])
    assert status == 404 and body["error"]["param"] == "functions"
    status, body = await run_loop(fclient, "x", functions=["delete_everything"])
    assert status == 403 and "allow_unsafe" in body["error"]["message"]
    status, body = await run_loop(fclient, "x", generation_type="tti")
    assert status == 400
    status, body = await run_loop(fclient, "x", personality="prompt_artist")
    assert status == 400 and "context.call_function" in body["error"]["message"]


async def test_unsafe_functions_run_once_enabled(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    client = await make_client(functions_config(make_config, allow_unsafe=["delete_everything"]))
    status, body = await run_loop(
        client, 'CALL delete_everything {"path": "/tmp/x"}', functions=["delete_everything"]
    )
    assert status == 200 and body["output"][0]["data"] == "Function results: deleted /tmp/x"


async def test_binding_without_tools_is_refused(
    make_client: MakeClient, make_config: MakeConfig, tmp_path: Path
) -> None:
    from lollms_server.builtin.echo import EchoBinding
    from lollms_server.hookspecs import hookimpl
    from lollms_server.plugins import load_plugins

    class Toolless(EchoBinding):
        name = "toolless"
        capabilities = EchoBinding.capabilities - {"tools"}

    class Plugin:
        @hookimpl
        def register_bindings(self) -> list[type[EchoBinding]]:
            return [Toolless]

    config = functions_config(make_config)
    from lollms_server.config import InstanceConfig

    config.bindings["plain"] = InstanceConfig(name="plain", type="toolless", default_model="echo")
    client = await make_client(config, plugins=load_plugins(extra={"t": Plugin()}))
    status, body = await run_loop(client, "x", binding_name="plain")
    assert status == 501 and "tools capability" in body["error"]["message"]


async def test_openai_tools_pass_through_with_stream_deltas(client: Client) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    body = {
        "model": "echo/echo",
        "messages": [{"role": "user", "content": 'CALL get_weather {"city": "Nice"}'}],
        "tools": tools,
        "stream": True,
    }
    response = await client.post("/v1/chat/completions", json=body)
    lines = [x[6:] for x in (await response.text()).splitlines() if x.startswith("data: ")]
    events = [json.loads(x) for x in lines if x != "[DONE]"]
    deltas = [c for e in events for c in e["choices"][0]["delta"].get("tool_calls", [])]
    assert deltas[0]["function"] == {"name": "get_weather", "arguments": '{"city": "Nice"}'}
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_a_script_calls_functions_through_its_context(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    config = functions_config(make_config)
    folder = config.personalities_dir / "forecaster"
    (folder / "scripts").mkdir(parents=True)
    (folder / "config.yaml").write_text("name: forecaster\n")
    (folder / "scripts" / "workflow.py").write_text(
        "async def run_workflow(prompt, params, context):\n"
        "    good = await context.call_function('get_weather', {'city': prompt})\n"
        "    bad = await context.call_function('get_weather', {'town': prompt})\n"
        "    return good.result + ' | ' + bad.error\n"
    )
    client = await make_client(config)
    body = {"personality": "forecaster", "input_data": [{"type": "text", "data": "Oslo"}]}
    response = await client.post("/api/v1/generate", json=body)
    assert response.status == 200, await response.text()
    text = (await response.json())["output"][0]["data"]
    good, bad = text.split(" | ")
    assert json.loads(good)["city"] == "Oslo" and "'city' is a required property" in bad
    assert calls_of(client) == ["Oslo"]


async def test_calls_are_counted_and_audited(fclient: Client) -> None:
    await run_loop(fclient, 'CALL get_weather {"city": "Rome"}')
    await run_loop(fclient, 'CALL get_weather {"town": "Rome"}')
    text = await (await fclient.get("/metrics")).text()
    samples = {
        (s.name, s.labels.get("function"), s.labels.get("outcome")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("lollms_function_calls_total", "get_weather", "ok")] == 1
    assert samples[("lollms_function_calls_total", "get_weather", "error")] == 1
    assert samples[("lollms_function_seconds_count", "get_weather", None)] == 2
    events = (await (await fclient.get("/api/v1/audit?event=function_call")).json())["events"]
    assert [e["detail"]["outcome"] for e in events] == ["error", "ok"]  # newest first
    assert "required property" in events[0]["detail"]["error"]
    assert all(e["request_id"] for e in events)


async def test_the_loop_holds_one_concurrency_slot_from_its_first_step_to_its_last(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    """A key with `max_concurrent` 1: a second request while the loop's function runs is the
    429, not the loop's next step (which lost the work already done)."""
    config = functions_config(make_config, max_steps=3)
    config.security.local_access = False
    client = await make_client(config)
    key, _ = await client.app[KEYSTORE].create("one at a time", "user", max_concurrent=1)
    headers = {"Authorization": f"Bearer {key}"}
    body = {
        "functions": ["slow"],
        "input_data": [{"type": "text", "data": 'CALL slow {"seconds": 1}'}],
    }
    loop = asyncio.ensure_future(client.post("/api/v1/generate", json=body, headers=headers))
    await asyncio.sleep(0.4)  # the loop's first step is done; its function runs
    other = {"input_data": [{"type": "text", "data": "hi"}]}
    second = await client.post("/api/v1/generate", json=other, headers=headers)
    assert second.status == 429, await second.text()
    response = await loop
    answer = await response.json()
    assert response.status == 200, answer
    assert answer["steps"][0]["function_calls"][0]["result"] == "slow done"
    third = await client.post("/api/v1/generate", json=other, headers=headers)
    assert third.status == 200, await third.text()  # the slot was given back


def test_a_history_call_whose_arguments_are_not_json_is_replayed_with_an_empty_object() -> None:
    """Whoever sent the history (a client on any face, or the loop), a call cut short reaches the
    binding with `{}`: llama.cpp refuses the whole request otherwise (a 500, a 502 here)."""
    cut = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"ci'}}
    whole = {"id": "c2", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    message = ChatMessage("assistant", "", tool_calls=(cut, whole))  # type: ignore[arg-type]
    assert [call.arguments for call in message.tool_calls] == [{}, '{"a": 1}']
    assert message.tool_calls[0].arguments_json == "{}"


def test_a_name_no_tool_api_accepts_is_a_problem_not_a_function() -> None:
    """OpenAI-compatible servers refuse a whole request whose tool name is not 1-64 letters,
    digits, `_` or `-`: a plugin's lambda ('<lambda>') or a spaced name is reported, naming
    the fix, instead of being offered to models and failing every request that uses it."""
    registry = FunctionRegistry()

    @function(name="get weather")
    def spaced(city: str) -> str:
        """Weather."""
        return city

    def fine(city: str) -> str:
        """Weather."""
        return city

    registry.add_callables([lambda city: city, spaced, fine], "plugin p")
    assert list(registry.by_name) == ["fine"]
    assert len(registry.problems) == 2, registry.problems
    assert "'<lambda>' is not a valid tool name" in registry.problems[0]
    assert "'get weather' is not a valid tool name" in registry.problems[1]
    assert all("@function(name=" in problem for problem in registry.problems)


def test_a_plugin_marks_its_functions_through_the_sdk() -> None:
    """`@function` comes from `lollms_server.sdk` too (plugins import nothing else of the
    core): a plugin's function marked unsafe stays off, renamed keeps its name."""
    from lollms_server.sdk import function as sdk_function

    @sdk_function(name="wipe_disk", unsafe=True)
    def wipe(path: str) -> str:
        """Delete everything under a path."""
        return path

    registry = FunctionRegistry()
    registry.add_callables([wipe], "plugin p")
    marked = registry.by_name["wipe_disk"]
    assert marked.unsafe and not marked.enabled, marked
