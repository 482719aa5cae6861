"""A node whose whole answer has no `output` list (a broken or foreign server on the node's
address): the gateway's 502 naming the instance, not a 200 with an empty text."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from lollms_remote import LollmsRemoteBinding
from lollms_remote.settings import RemoteSettings

from lollms_server.bindings import ChatMessage, GenerationRequest
from lollms_server.errors import BackendError


@pytest.mark.parametrize(
    "answer",
    [{"output": "hello"}, {"output": [{"type": "text", "data": "hi"}, "x"]}, {"text": "hello"}],
)
async def test_an_answer_without_an_output_list_is_a_502_naming_the_node(answer: Any) -> None:
    async def generate(_request: web.Request) -> web.Response:
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/api/v1/generate", generate)
    async with TestServer(app, host="127.0.0.1") as node:
        settings = RemoteSettings().load({"base_url": str(node.make_url(""))})
        binding = LollmsRemoteBinding("odd", settings)
        await binding.startup()
        request = GenerationRequest("ttt", "echo/echo", (ChatMessage("user", "hi"),))
        try:
            with pytest.raises(BackendError) as caught:
                await binding.generate(request)
        finally:
            await binding.shutdown()
    assert caught.value.status == 502 and caught.value.binding == "odd"
    assert "`output` list" in caught.value.message


async def test_an_empty_output_list_is_still_an_answer() -> None:
    """A node may answer nothing (an empty list): that is its answer, not a failure."""

    async def generate(_request: web.Request) -> web.Response:
        return web.json_response({"output": [], "finish_reason": "stop"})

    app = web.Application()
    app.router.add_post("/api/v1/generate", generate)
    async with TestServer(app, host="127.0.0.1") as node:
        binding = LollmsRemoteBinding(
            "odd", RemoteSettings().load({"base_url": str(node.make_url(""))})
        )
        await binding.startup()
        try:
            result = await binding.generate(
                GenerationRequest("ttt", "echo/echo", (ChatMessage("user", "hi"),))
            )
        finally:
            await binding.shutdown()
    assert result.outputs[0].text == "" and result.finish_reason == "stop"
