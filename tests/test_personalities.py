"""Personalities: upstream folders, sources and collisions, reload, every face, scripts."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import MakeClient, MakeConfig

from lollms_server.bindings import Chunk, GenerationRequest
from lollms_server.builtin.echo import EchoBinding
from lollms_server.config import Config
from lollms_server.hookspecs import hookimpl
from lollms_server.keys import KEYSTORE
from lollms_server.plugins import load_plugins

Client = TestClient[Any, Any]

UPSTREAM = """
name: {name}
author: Ada
version: 2.1
category: science
language: english
license: MIT
creation_date: 2024-01-02
last_update_date: 2025-03-04
tags: [physics, teacher]
personality_description: Explains physics.
personality_conditioning: You are a physics teacher.
welcome_message: Ask me about physics!
user_name: student
user_message_prefix: "student:"
ai_message_prefix: "teacher:"
link_text: "\\n"
disclaimer: Not a substitute for a textbook.
help: Ask a question.
dependencies: [numpy]
prompts_list: ["What is inertia?"]
recommended_binding: echo
recommended_model: echo
anti_prompts: ["student:"]
model_temperature: 0.2
model_n_predicts: 128
model_top_k: 30
model_top_p: 0.8
model_repeat_penalty: 1.2
model_repeat_last_n: 40
processor_cfg: {{custom_workflow: true}}
"""


def write_personality(root: Path, name: str, script: str | None = None, **fields: str) -> Path:
    """A personality folder in the upstream layout (config.yaml, assets/logo.svg, scripts/)."""
    folder = root / name
    (folder / "assets").mkdir(parents=True, exist_ok=True)
    text = UPSTREAM.format(name=name) + "".join(f"{k}: {v}\n" for k, v in fields.items())
    (folder / "config.yaml").write_text(text)
    (folder / "assets" / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    if script is not None:
        (folder / "scripts").mkdir(exist_ok=True)
        (folder / "scripts" / "workflow.py").write_text(textwrap.dedent(script))
    return folder


def sse_events(text: str) -> list[dict[str, Any]]:
    """The JSON events of an SSE body."""
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


async def generate(client: Client, **body: Any) -> tuple[int, Any]:
    """POST /api/v1/generate; JSON for a plain answer, the events for a stream."""
    body.setdefault("input_data", [{"type": "text", "data": "hello"}])
    response = await client.post("/api/v1/generate", json=body)
    if body.get("stream"):
        return response.status, sse_events(await response.text())
    return response.status, await response.json()


async def test_every_upstream_field_is_read(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    config = make_config()
    write_personality(config.personalities_dir, "physics")
    client = await make_client(config)
    listed = (await (await client.get("/api/v1/list_personalities")).json())["personalities"]
    item = listed["physics"]
    assert item["author"] == "Ada" and item["version"] == "2.1" and item["license"] == "MIT"
    assert item["tags"] == ["physics", "teacher"] and item["category"] == "science"
    assert item["welcome_message"] == "Ask me about physics!"
    assert item["user_message_prefix"] == "student:" and item["ai_message_prefix"] == "teacher:"
    assert item["disclaimer"] and item["dependencies"] == ["numpy"]
    assert item["prompts_list"] == ["What is inertia?"] and item["anti_prompts"] == ["student:"]
    assert item["creation_date"] == "2024-01-02" and item["recommended_binding"] == "echo"
    assert item["sampling"] == {
        "temperature": 0.2, "max_tokens": 128, "top_k": 30, "top_p": 0.8,
        "repeat_penalty": 1.2, "repeat_last_n": 40,
    }  # fmt: skip
    assert item["has_icon"] and not item["scripted"]
    icon = await client.get("/personalities/physics/icon")
    assert icon.status == 200 and icon.content_type == "image/svg+xml"
    assert (await client.get("/personalities/concise_assistant/icon")).status == 200


async def test_an_icon_is_an_inert_image(make_client: MakeClient, make_config: MakeConfig) -> None:
    """A personality's SVG icon opened on its own is sandboxed with no script at all (it ran
    under the pages' CSP before, whose script-src 'self' let an SVG from a downloaded
    personality load htmx from /static in Chromium), and no shared cache keeps it."""
    config = make_config()
    folder = write_personality(config.personalities_dir, "svg")
    (folder / "assets" / "logo.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg"><script href="/static/app.js"/></svg>'
    )
    client = await make_client(config)
    icon = await client.get("/personalities/svg/icon")
    assert icon.status == 200 and icon.content_type == "image/svg+xml"
    policy = icon.headers["Content-Security-Policy"]
    assert "sandbox" in policy and "default-src 'none'" in policy and "'self'" not in policy
    assert icon.headers["Cache-Control"].startswith("private")


async def test_sources_order_and_collisions_are_reported(
    make_client: MakeClient, make_config: MakeConfig, tmp_path: Path
) -> None:
    extra = tmp_path / "extra"
    config = make_config()
    config.personality_folders = [extra]
    write_personality(config.personalities_dir, "twin", personality_description="from data")
    write_personality(extra, "twin", personality_description="from extra")
    write_personality(extra, "only_extra")

    class Plugin:
        @hookimpl
        def register_personalities(self) -> list[dict[str, Any]]:
            return [{"name": "concise_assistant", "personality_description": "from plugin"},
                    {"name": "only_extra", "personality_description": "plugin loses"}]  # fmt: skip

    plugins = load_plugins(extra={"zplug": Plugin()})
    client = await make_client(config, plugins=plugins)
    body = await (await client.get("/api/v1/list_personalities")).json()
    listed, problems = body["personalities"], body["problems"]
    assert listed["twin"]["description"] == "from data"
    assert listed["concise_assistant"]["description"] == "from plugin"  # a plugin beats an example
    assert listed["only_extra"]["description"] == "Explains physics."
    assert any("'twin'" in p and str(extra) in p for p in problems)
    assert any("'only_extra'" in p and "plugin zplug" in p for p in problems)
    assert any("'concise_assistant'" in p and "examples" in p for p in problems)


async def test_reload_picks_up_added_changed_and_removed(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    config = make_config()
    folder = write_personality(config.personalities_dir, "changing", personality_description="v1")
    client = await make_client(config)
    write_personality(config.personalities_dir, "added")
    (folder / "config.yaml").write_text("name: changing\npersonality_description: v2\n")
    (config.functions_dir / "tools.py").write_text(
        "from lollms_server.service.functions import function\n\n"
        "@function()\ndef ping() -> str:\n    'Answer pong.'\n    return 'pong'\n"
    )
    response = await client.post("/api/v1/reload_personalities", json={})
    assert response.status == 200, await response.text()
    summary = await response.json()
    assert {"added", "changing"} <= set(summary["personalities"])
    assert summary["functions"] == ["ping"]
    listed = (await (await client.get("/api/v1/list_personalities")).json())["personalities"]
    assert listed["changing"]["description"] == "v2" and "added" in listed
    (config.personalities_dir / "added" / "config.yaml").unlink()
    page = await client.post("/personalities/reload", headers={"Origin": str(client.make_url(""))})
    assert page.status == 200 and "reloaded:" in await page.text()
    listed = (await (await client.get("/api/v1/list_personalities")).json())["personalities"]
    assert "added" not in listed
    events = (await (await client.get("/api/v1/audit?event=library_reloaded")).json())["events"]
    assert [e["path"] for e in events] == ["/personalities/reload", "/api/v1/reload_personalities"]


async def test_reload_is_admin_only(make_client: MakeClient, make_config: MakeConfig) -> None:
    config = make_config()
    config.security.local_access = False
    client = await make_client(config)
    user_key, _ = await client.app[KEYSTORE].create("u", "user")
    admin_key, _ = await client.app[KEYSTORE].create("a", "admin")
    refused = await client.post(
        "/api/v1/reload_personalities", json={}, headers={"Authorization": f"Bearer {user_key}"}
    )
    assert refused.status == 403
    allowed = await client.post(
        "/api/v1/reload_personalities", json={}, headers={"Authorization": f"Bearer {admin_key}"}
    )
    assert allowed.status == 200


@pytest.mark.parametrize("face", ["lollms", "openai", "ollama"])
async def test_anti_prompts_and_sampling_apply_on_every_face(client: Client, face: str) -> None:
    prompt = "hello user: more words"  # concise_assistant stops at "user:"
    if face == "lollms":
        status, body = await generate(
            client, personality="concise_assistant",
            input_data=[{"type": "text", "data": prompt}],
        )  # fmt: skip
        assert status == 200, body
        text = body["output"][0]["data"]
    elif face == "openai":
        response = await client.post("/v1/chat/completions", json={
            "model": "concise_assistant@echo/echo",
            "messages": [{"role": "user", "content": prompt}],
        })  # fmt: skip
        assert response.status == 200, await response.text()
        text = (await response.json())["choices"][0]["message"]["content"]
    else:
        response = await client.post("/api/chat", json={
            "model": "concise_assistant@echo/echo", "stream": False,
            "messages": [{"role": "user", "content": prompt}],
        })  # fmt: skip
        assert response.status == 200, await response.text()
        text = (await response.json())["message"]["content"]
    assert text == "hello "


async def test_openai_personality_field_and_conflicts(client: Client) -> None:
    messages = [{"role": "user", "content": "a user: b"}]
    body = {"model": "echo/echo", "personality": "concise_assistant", "messages": messages}
    ok = await client.post("/v1/chat/completions", json=body)
    assert (await ok.json())["choices"][0]["message"]["content"] == "a "
    clash = await client.post("/v1/chat/completions", json={
        "model": "prompt_artist@echo/echo", "personality": "concise_assistant",
        "messages": messages})  # fmt: skip
    assert clash.status == 400 and (await clash.json())["error"]["param"] == "personality"
    missing = await client.post("/v1/chat/completions", json={
        "model": "nobody@echo/echo", "messages": messages})  # fmt: skip
    assert missing.status == 404 and "nobody" in (await missing.json())["error"]["message"]
    body = {"model": "concise_assistant@echo", "prompt": "x", "raw": True, "stream": False}
    raw = await client.post("/api/generate", json=body)
    assert raw.status == 400


async def test_scripted_example_chains_text_then_image(client: Client) -> None:
    status, events = await generate(
        client, personality="prompt_artist", stream=True,
        input_data=[{"type": "text", "data": "a red fox"}], parameters={"width": 16, "height": 8},
    )  # fmt: skip
    assert status == 200
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "final" and "error" not in kinds
    infos = [e["content"] for e in events if e["type"] == "info"]
    assert "refining the prompt" in infos and "drawing the image" in infos
    refined = "".join(e["content"] for e in events if e["type"] == "chunk")
    assert "a red fox" in refined  # echo's "refinement" repeats the instruction
    outputs = events[-1]["content"]
    image = next(o for o in outputs if o["type"] == "image")
    assert image["mime_type"] == "image/png"
    png = base64.b64decode(image["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (16, 8)
    status, body = await generate(client, personality="prompt_artist")
    assert status == 200 and [o["type"] for o in body["output"]] == ["text", "image"]


SYNC_SCRIPT = """
def run_workflow(prompt, params, context):
    context.send_info("thinking in a thread")
    answer = context.run(context.generate_text("echo " + prompt))
    context.send_chunk("[" + answer + "]")
    return " done"
"""

GIVING_UP_SCRIPT = """
import asyncio

async def run_workflow(prompt, params, context):
    context.send_chunk("partial")
    raise asyncio.CancelledError("its own work was cancelled")
"""


async def test_a_script_raising_cancelled_error_is_a_clean_error(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    """Not taken for a client that left (which drops the connection without an answer)."""
    config = make_config()
    write_personality(config.personalities_dir, "giver", script=GIVING_UP_SCRIPT)
    client = await make_client(config)
    status, body = await generate(client, personality="giver")
    assert status == 502 and body["error"]["type"] == "workflow_error", body
    assert "CancelledError: its own work was cancelled" in body["error"]["message"]
    status, events = await generate(client, personality="giver", stream=True)
    error = next(e for e in events if e["type"] == "error")["metadata"]["error"]
    assert error["type"] == "workflow_error" and "CancelledError" in error["message"]
    assert events[-1]["type"] == "final"


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("context.send_chunk(123)", "send_chunk takes text, not int"),
        ("context.send_output('a picture')", "send_output takes an Output, not str"),
        ("context.send_info('step', seen={1, 2})", "not JSON serializable"),
        ("context.send_info(42)", "send_info takes text, not int"),
    ],
)
async def test_a_script_sending_the_wrong_kind_is_a_clean_error(
    make_client: MakeClient, make_config: MakeConfig, sent: str, expected: str
) -> None:
    """What a script sends is checked as what it returns is: an error naming the script,
    never a 500 or a stream that stops without its final event."""
    config = make_config()
    script = f"async def run_workflow(prompt, params, context):\n    {sent}\n    return 'end'\n"
    write_personality(config.personalities_dir, "sender", script=script)
    client = await make_client(config)
    status, body = await generate(client, personality="sender")
    assert status == 502 and body["error"]["type"] == "workflow_error", body
    assert expected in body["error"]["message"] and "sender" in body["error"]["message"]
    status, events = await generate(client, personality="sender", stream=True)
    assert status in (200, 502), events
    if status == 200:
        error = next(e for e in events if e["type"] == "error")["metadata"]["error"]
        assert error["type"] == "workflow_error" and expected in error["message"]
        assert events[-1]["type"] == "final"


ENDLESS_SCRIPT = """
import asyncio

async def run_workflow(prompt, params, context):
    context.send_chunk("tick")
    while True:
        await asyncio.sleep(0.05)
"""


@pytest.mark.parametrize("stream", [False, True])
async def test_a_script_that_never_ends_is_a_504_at_the_request_time_limit(
    make_client: MakeClient, make_config: MakeConfig, stream: bool
) -> None:
    """`request_timeout_s` bounds a script's run as it bounds any generation."""
    config = make_config(request_timeout_s=1)
    write_personality(config.personalities_dir, "endless", script=ENDLESS_SCRIPT)
    client = await make_client(config)
    started = asyncio.get_running_loop().time()
    status, body = await asyncio.wait_for(
        generate(client, personality="endless", stream=stream), timeout=10
    )
    assert asyncio.get_running_loop().time() - started < 5
    if stream:
        assert status == 200 and body[1] == {**body[1], "type": "chunk", "content": "tick"}
        error = next(e for e in body if e["type"] == "error")["metadata"]["error"]
        assert body[-1]["type"] == "final", body
    else:
        assert status == 504, body
        error = body["error"]
    assert error["type"] == "backend_timeout", error
    assert "endless" in error["message"] and "within 1" in error["message"], error


FAILING_SCRIPT = """
async def run_workflow(prompt, params, context):
    context.send_chunk("partial")
    raise ValueError("the script broke")
"""


async def test_sync_script_runs_off_the_loop(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    config = make_config()
    write_personality(config.personalities_dir, "syncer", script=SYNC_SCRIPT)
    client = await make_client(config)
    status, body = await generate(client, personality="syncer")
    assert status == 200, body
    assert body["output"][0]["data"] == "[echo hello] done"
    status, events = await generate(client, personality="syncer", stream=True)
    assert [e["content"] for e in events if e["type"] == "info"][1] == "thinking in a thread"


async def test_failing_script_is_a_clean_error(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    config = make_config()
    folder = write_personality(config.personalities_dir, "breaker", script=FAILING_SCRIPT)
    write_personality(config.personalities_dir, "unimportable", script="raise ImportError('no')\n")
    client = await make_client(config)
    status, events = await generate(client, personality="breaker", stream=True)
    assert status == 200
    error = next(e for e in events if e["type"] == "error")["metadata"]["error"]
    assert error["type"] == "workflow_error" and "the script broke" in error["message"]
    assert str(folder / "scripts" / "workflow.py") in error["message"]
    assert events[-1]["type"] == "final" and events[-1]["metadata"]["status"] == "error"
    status, body = await generate(client, personality="breaker")
    assert status == 502 and body["error"]["type"] == "workflow_error"
    listed = await (await client.get("/api/v1/list_personalities")).json()
    assert "unimportable" not in listed["personalities"]
    assert any("unimportable" in p and "ImportError" in p for p in listed["problems"])
    health = await client.get("/api/v1/health")  # the server is still fine
    assert health.status == 200


async def test_plugin_personality_with_a_workflow_callable(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    async def shout(prompt: str, params: dict[str, Any], context: Any) -> str:
        result = await context.generate(prompt, generation_type="tts")
        context.send_output(result.outputs[0])
        return prompt.upper()

    plugin = SimpleNamespace(register_personalities=hookimpl(
        lambda: [{"name": "shouter", "run_workflow": shout}]))  # fmt: skip
    client = await make_client(make_config(), plugins=load_plugins(extra={"p": plugin}))
    status, body = await generate(client, personality="shouter")
    assert status == 200, body
    assert [o["type"] for o in body["output"]] == ["text", "audio"]
    assert body["output"][0]["data"] == "HELLO"


class Recorder(EchoBinding):
    """Echo that records the requests it was asked."""

    name = "recorder"
    seen: list[GenerationRequest] = []

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        Recorder.seen.append(request)
        async for chunk in super().stream(request):
            yield chunk


class RecorderPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[EchoBinding]]:
        return [Recorder]


@pytest.mark.parametrize("face", ["lollms", "openai", "ollama"])
async def test_system_message_and_sampling_reach_the_binding(
    make_client: MakeClient, make_config: MakeConfig, face: str
) -> None:
    config = make_config({"bindings": {"rec": {"type": "recorder", "default_model": "echo"}},
                          "defaults": {"ttt": "rec"}})  # fmt: skip
    client = await make_client(config, plugins=load_plugins(extra={"r": RecorderPlugin()}))
    Recorder.seen.clear()
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    if face == "lollms":
        status, _ = await generate(client, personality="concise_assistant", parameters={"top_k": 5})
        assert status == 200
    elif face == "openai":
        body = {"model": "concise_assistant@rec/echo", "messages": messages, "top_k": 5}
        assert (await client.post("/v1/chat/completions", json=body)).status == 200
    else:
        body = {"model": "concise_assistant@rec/echo", "messages": messages, "stream": False,
                "options": {"top_k": 5}}  # fmt: skip
        assert (await client.post("/api/chat", json=body)).status == 200
    (request,) = Recorder.seen
    system = request.messages[0]
    assert system.role == "system" and system.content.startswith("You are a helpful assistant.")
    if face != "lollms":  # the caller's own system message follows the personality's
        assert system.content.endswith("Be brief.")
    params = request.parameters
    assert params["temperature"] == 0.3 and params["max_tokens"] == 256
    assert params["top_k"] == 5  # the caller's value wins over the personality's 40
    assert "user:" in params["stop"]


TWO_STEP_SCRIPT = """
async def run_workflow(prompt, params, context):
    first = await context.generate_text("one " + prompt)
    second = await context.generate_text("two " + prompt)
    context.send_chunk(first + " | ")
    return second
"""


def generated_tokens(metrics: str) -> float:
    """lollms_generated_tokens_total of the echo instance."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("lollms_generated_tokens_total{") and 'instance="echo"' in line
    )


@pytest.mark.parametrize("face", ["lollms", "openai"])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_scripts_usage_is_the_sum_of_its_generations(
    make_client: MakeClient, make_config: MakeConfig, face: str, stream: bool
) -> None:
    config = make_config()
    write_personality(config.personalities_dir, "two_step", script=TWO_STEP_SCRIPT)
    client = await make_client(config)
    steps = []
    for prompt in ("one hello", "two hello"):
        status, body = await generate(client, input_data=[{"type": "text", "data": prompt}])
        steps.append(body["usage"])
    expected = {k: steps[0][k] + steps[1][k] for k in ("prompt_tokens", "completion_tokens")}
    assert expected["completion_tokens"] > 0
    before = generated_tokens(await (await client.get("/metrics")).text())
    if face == "lollms":
        status, body = await generate(client, personality="two_step", stream=stream)
        assert status == 200, body
        usage = body[-1]["metadata"]["usage"] if stream else body["usage"]
    else:
        chat = {"model": "two_step@echo/echo", "stream": stream,
                "messages": [{"role": "user", "content": "hello"}]}  # fmt: skip
        if stream:
            chat["stream_options"] = {"include_usage": True}
        response = await client.post("/v1/chat/completions", json=chat)
        assert response.status == 200, await response.text()
        text = (await response.text()).replace("data: [DONE]", "")
        usage = sse_events(text)[-1]["usage"] if stream else json.loads(text)["usage"]
    assert usage is not None, "a script's run reports no usage"
    assert {k: usage[k] for k in expected} == expected
    assert usage["total_tokens"] == sum(expected.values())
    after = generated_tokens(await (await client.get("/metrics")).text())
    assert after - before == expected["completion_tokens"]  # counted once, not again for the run


@pytest.mark.parametrize("face", ["openai", "ollama"])
async def test_tools_sent_to_a_scripted_personality_are_refused(client: Client, face: str) -> None:
    """A script answers with text: tools it cannot pass on are refused, never dropped."""
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    body: dict[str, Any] = {
        "model": "prompt_artist@echo/echo",
        "messages": [{"role": "user", "content": "a cat"}],
        "tools": [tool],
        "stream": False,
    }
    path = "/v1/chat/completions" if face == "openai" else "/api/chat"
    response = await client.post(path, json=body)
    text = await response.text()
    assert response.status == 400, text
    assert "tools" in text and "prompt_artist" in text, text


async def test_a_script_generates_only_with_what_the_key_allows(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    config = make_config({
        "bindings": {"echo": {"type": "echo", "default_model": "echo"},
                     "painter": {"type": "echo", "default_model": "echo"}},
        "defaults": {"ttt": "echo", "tti": "painter"},
    })  # fmt: skip
    config.security.local_access = False
    client = await make_client(config)
    key, _ = await client.app[KEYSTORE].create("text only", "user", allowed_bindings=["echo"])
    headers = {"Authorization": f"Bearer {key}"}
    body = {"personality": "prompt_artist", "stream": True,
            "input_data": [{"type": "text", "data": "a cat"}]}  # fmt: skip
    response = await client.post("/api/v1/generate", json=body, headers=headers)
    events = sse_events(await response.text())
    error = next(e for e in events if e["type"] == "error")["metadata"]["error"]
    assert error["type"] == "forbidden" and "default 'tti'" in error["message"]
    assert "painter" not in error["message"]  # a default the key may not use is not named
    assert any(e["type"] == "chunk" for e in events)  # the text step ran before the refusal


CANCELLABLE_SCRIPT = """
import asyncio

EVENTS = []


async def run_workflow(prompt, params, context):
    try:
        for index in range(200):
            context.send_chunk(f"tick {index} ")
            await asyncio.sleep(0.02)
    except asyncio.CancelledError:
        EVENTS.append("cancelled")
        raise
    EVENTS.append("finished")
"""


async def leave_mid_stream(make_client: MakeClient, config: Config, name: str) -> list[str]:
    """Stream personality `name` until "tick 2", hang up, and return what its script recorded."""
    client = await make_client(config)
    body = {"personality": name, "stream": True,
            "input_data": [{"type": "text", "data": "go"}]}  # fmt: skip
    response = await client.post("/api/v1/generate", json=body)
    while b"tick 2" not in await response.content.readline():
        pass
    response.close()
    events: list[str] = sys.modules[f"lollms_personalities.{name}.workflow"].EVENTS
    for _ in range(200):
        if events:
            break
        await asyncio.sleep(0.02)
    return events


async def test_a_client_that_leaves_cancels_the_script(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    config = make_config()
    write_personality(config.personalities_dir, "ticker", script=CANCELLABLE_SCRIPT)
    assert await leave_mid_stream(make_client, config, "ticker") == ["cancelled"]


SYNC_TICKER = """
import time

EVENTS = []


def run_workflow(prompt, params, context):
    try:
        for index in range(500):
            context.send_chunk(f"tick {index} ")
            time.sleep(0.01)
    except BaseException as exc:
        EVENTS.append(type(exc).__name__)
        raise
    EVENTS.append("finished")
"""


async def test_a_sync_script_stops_at_its_next_send_once_the_client_left(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    config = make_config()
    write_personality(config.personalities_dir, "syncticker", script=SYNC_TICKER)
    assert await leave_mid_stream(make_client, config, "syncticker") == ["CancelledError"]
