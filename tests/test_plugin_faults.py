"""A binding that breaks the contract (wrong return types, non-Chunk items) is a 502 naming
its instance on every face, never a bare 500."""

from __future__ import annotations

import asyncio
import time
import types
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import MakeClient, MakeConfig

from lollms_server.bindings import (
    Binding,
    Chunk,
    GenerationRequest,
    Health,
    ModelInfo,
    Output,
    Result,
    Usage,
)
from lollms_server.hookspecs import hookimpl
from lollms_server.plugins import load_plugins

Client = TestClient[Any, Any]
FAULTS = ("dict", "none", "string_chunks")
# a Chunk or Result of the right class holding the wrong types; an exception whose str() fails;
# a CancelledError the binding raises itself (a library's inner task leaking it)
# a KeyboardInterrupt the binding raises (a library's; a real Ctrl-C stops the server elsewhere)
# usage counts below zero (a broken upstream's numbers; they were a 500: a counter cannot go down)
SLIPS = (
    "bytes_content",
    "str_outputs",
    "unprintable",
    "self_cancel",
    "interrupt",
    "negative_usage",
)


class Unprintable(Exception):
    """An exception whose message cannot be formatted."""

    def __str__(self) -> str:
        raise RuntimeError("no message")


class Careless(Binding):
    """Returns what the model name says instead of a Result or Chunks."""

    name = "careless"
    capabilities = frozenset({"ttt", "stream"})

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(fault) for fault in FAULTS + SLIPS]

    async def generate(self, request: GenerationRequest) -> Result:
        if request.model == "dict":
            return {"text": "a dict"}  # type: ignore[return-value]
        if request.model == "none":
            return None  # type: ignore[return-value]
        if request.model == "str_outputs":
            return Result(outputs=("a str",))  # type: ignore[arg-type]
        if request.model == "negative_usage":
            return Result((Output("text", text="hi"),), Usage(-5, -7))
        return await super().generate(request)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        if request.model == "bytes_content":
            yield Chunk(content=b"bytes")  # type: ignore[arg-type]
        elif request.model == "str_outputs":
            yield Chunk(output="a str")  # type: ignore[arg-type]
        elif request.model == "unprintable":
            raise Unprintable
        elif request.model == "self_cancel":
            raise asyncio.CancelledError
        elif request.model == "interrupt":
            raise KeyboardInterrupt
        elif request.model == "negative_usage":
            yield Chunk(usage=Usage(-5, -7), finish_reason="stop")
        yield "a plain string"  # type: ignore[misc]

    async def tokenize(self, text: str, model: str) -> list[int]:
        if model == "none":
            return (1, 2)  # type: ignore[return-value]  # any sequence of ints is fine
        return [object()]  # type: ignore[list-item]

    async def detokenize(self, tokens: list[int], model: str) -> str:
        return b"bytes"  # type: ignore[return-value]


class Unlisted(Careless):
    """Its model list fails (a plain exception, against the contract)."""

    name = "unlisted"

    async def list_models(self) -> list[ModelInfo]:
        raise RuntimeError("cannot list")


class Stuck(Careless):
    """Its model list never answers."""

    name = "stuck"

    async def list_models(self) -> list[ModelInfo]:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


class OddList(Careless):
    """Its list_models() answers names instead of ModelInfo."""

    name = "oddlist"

    async def list_models(self) -> list[ModelInfo]:
        return ["a", "b"]  # type: ignore[list-item]


class Unwell(Careless):
    """Its health() answers a str instead of a Health."""

    name = "unwell"

    async def health(self) -> Health:
        return "fine"  # type: ignore[return-value]


class Upbeat(Careless):
    """Its health() answers a Health whose state is none of up, degraded, down."""

    name = "upbeat"

    async def health(self) -> Health:
        return Health("ok")  # type: ignore[arg-type]


class CarelessPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [Careless, Unlisted, Unwell, Stuck, OddList, Upbeat]


@pytest.fixture
async def client(make_client: MakeClient, make_config: MakeConfig) -> Client:
    """One `careless` instance, circuit breaker out of the way."""
    config = make_config(
        {
            "bindings": {
                "bad": {"type": "careless"},
                "unlisted": {"type": "unlisted"},
                "unwell": {"type": "unwell"},
                "upbeat": {"type": "upbeat"},
                "stuck": {"type": "stuck"},
            },
            "defaults": {"ttt": "bad"},
            "resilience": {"failure_threshold": 1000, "health_interval_s": 0},
        }
    )
    return await make_client(config, plugins=load_plugins(extra={"c": CarelessPlugin()}))


def face_bodies(model: str) -> list[tuple[str, dict[str, Any]]]:
    """A chat with the `bad` instance's `model` on the OpenAI, lollms and Ollama faces."""
    messages = [{"role": "user", "content": "hi"}]
    return [
        ("/v1/chat/completions", {"model": f"bad/{model}", "messages": messages}),
        ("/api/v1/generate", {"input_data": [{"type": "text", "data": "hi"}],
                              "model_name": f"bad/{model}"}),
        ("/api/chat", {"model": f"bad/{model}", "messages": messages}),
    ]  # fmt: skip


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", FAULTS)
async def test_wrong_types_are_a_502_naming_the_binding(
    client: Client, model: str, stream: bool
) -> None:
    for path, body in face_bodies(model):
        response = await client.post(path, json={**body, "stream": stream})
        text = await response.text()
        assert response.status == 502, (path, text)
        assert "'bad'" in text, (path, text)
        assert "not a Result" in text or "not a Chunk" in text, (path, text)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", SLIPS)
async def test_binding_slips_are_a_502_naming_the_binding(
    client: Client, model: str, stream: bool
) -> None:
    """Wrong types inside a Chunk or Result, an exception that cannot say its message, a
    CancelledError of the binding's own and a KeyboardInterrupt it raises are the binding's 502
    (they were 500s, a dropped connection with no answer at all, or the server stopped)."""
    for path, body in face_bodies(model):
        response = await asyncio.wait_for(client.post(path, json={**body, "stream": stream}), 30)
        text = await response.text()
        assert response.status == 502, (path, text)
        assert "binding 'bad'" in text, (path, text)
    assert (
        await client.post("/api/v1/generate", json=dict(face_bodies(model))["/api/v1/generate"])
    ).status == 502  # still serving


async def test_tokenizer_wrong_types_are_a_502_naming_the_binding(client: Client) -> None:
    """Token ids that are not integers and a text that is not a str are the binding's fault."""
    body = {"text": "hi", "tokens": [1, 2], "binding_name": "bad", "model_name": "dict"}
    for path in ("/api/v1/tokenize", "/api/v1/count_tokens", "/api/v1/detokenize"):
        response = await client.post(path, json=body)
        text = await response.text()
        assert response.status == 502, (path, text)
        assert "binding 'bad' returned" in text, (path, text)
    tuple_ids = await client.post("/api/v1/tokenize", json={**body, "model_name": "none"})
    assert tuple_ids.status == 200 and (await tuple_ids.json())["tokens"] == [1, 2]


async def test_failing_model_list_behind_a_default_model_is_a_502(client: Client) -> None:
    """A request naming only the instance needs its model list: a failure there is the
    binding's 502, not a 500."""
    chat = {"model": "unlisted", "messages": [{"role": "user", "content": "hi"}]}
    response = await client.post("/v1/chat/completions", json=chat)
    text = await response.text()
    assert response.status == 502, text
    assert "binding 'unlisted' failed: RuntimeError: cannot list" in text


async def test_health_of_the_wrong_type_is_down_naming_it(client: Client) -> None:
    """A health() that returns no Health shows the instance down, saying so; the listing and
    the dashboard still answer."""
    listing = await client.get("/api/v1/list_active_bindings")
    assert listing.status == 200, await listing.text()
    health = (await listing.json())["bindings"]["unwell"]["health"]
    assert health["state"] == "down" and "returned str" in health["detail"], health
    assert (await client.get("/")).status == 200


async def test_health_of_an_unknown_state_is_down_naming_it(client: Client) -> None:
    """Health('ok') is no state the monitor, the metrics or readiness know (every state
    series read 0 for it): the instance is down, saying what it answered."""
    listing = await (await client.get("/api/v1/list_active_bindings")).json()
    health = listing["bindings"]["upbeat"]["health"]
    assert health["state"] == "down", health
    assert health["detail"] == "health() returned the state 'ok', not up, degraded or down"


async def test_hanging_model_list_behind_a_default_model_is_a_504(client: Client) -> None:
    """A request naming only the instance waits on its model list at most the health
    timeout, then gets the binding's 504 (it hung past request_timeout_s before)."""
    chat = {"model": "stuck", "messages": [{"role": "user", "content": "hi"}]}
    started = time.monotonic()
    response = await asyncio.wait_for(client.post("/v1/chat/completions", json=chat), 30)
    assert response.status == 504, await response.text()
    assert "binding 'stuck' did not answer" in await response.text()
    assert time.monotonic() - started < 10


async def test_model_list_of_the_wrong_type_spoils_no_listing(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    """One instance whose list_models() gives str items is that instance's listing error; the
    model lists of every face and the dashboard still answer (they were 500s for everyone)."""
    config = make_config(
        {
            "bindings": {"echo": {"type": "echo"}, "odd": {"type": "oddlist"}},
            "defaults": {"ttt": "echo"},
            "resilience": {"health_interval_s": 0},
        }
    )
    client = await make_client(config, plugins=load_plugins(extra={"c": CarelessPlugin()}))
    for path in ("/v1/models", "/api/tags", "/api/ps", "/"):
        response = await client.get(path)
        assert response.status == 200, (path, await response.text())
    listing = await (await client.get("/api/v1/list_models")).json()
    assert listing["models"]["echo"], listing
    error = listing["errors"]["odd"]["message"]
    assert error == "binding 'odd' returned list of str from list_models(), not a list of ModelInfo"
    one = await client.get("/api/v1/list_available_models/odd")
    assert one.status == 502, await one.text()


class FailsToStart(Careless):
    """Its startup() raises; its own health() says nothing of it (the base class's 'up')."""

    name = "failstostart"

    async def startup(self) -> None:
        raise OSError("cannot open the device")

    async def health(self) -> Health:
        return Health("up")


async def test_a_failed_startup_shows_in_the_instance_health(
    make_client: MakeClient, make_config: MakeConfig
) -> None:
    """An instance whose startup() raised is not shown 'up' on the strength of a health() that
    does not know: the listing and the bindings page say it failed to start, and why."""
    config = make_config(
        {
            "bindings": {"broken": {"type": "failstostart"}, "echo": {"type": "echo"}},
            "defaults": {"ttt": "echo"},
            "resilience": {"health_interval_s": 0},
        }
    )
    plugins = load_plugins(
        extra={"f": types.SimpleNamespace(register_bindings=hookimpl(lambda: [FailsToStart]))}
    )
    client = await make_client(config, plugins=plugins)
    listing = await (await client.get("/api/v1/list_active_bindings")).json()
    health = listing["bindings"]["broken"]["health"]
    assert health["state"] == "degraded", health
    assert health["detail"] == "startup failed: OSError('cannot open the device')", health
    assert listing["bindings"]["echo"]["health"]["state"] == "up", listing
    page = await client.get("/bindings")
    assert "startup failed" in await page.text()
