"""A node whose whole answer has no `output` list (a broken or foreign server on the node's
address): the gateway's 502 naming the instance, not a 200 with an empty text."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from lollms_remote import LollmsRemoteBinding
from lollms_remote.settings import RemoteSettings

from lollms_server.bindings import ChatMessage, GenerationRequest, Result
from lollms_server.errors import BackendError


async def generate_from(answer: Any) -> Result:
    """What the binding makes of a node that answers every generate with `answer`."""

    async def generate(_request: web.Request) -> web.Response:
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/api/v1/generate", generate)
    async with TestServer(app, host="127.0.0.1") as node:
        settings = RemoteSettings().load({"base_url": str(node.make_url(""))})
        binding = LollmsRemoteBinding("odd", settings)
        await binding.startup()
        try:
            return await binding.generate(
                GenerationRequest("ttt", "echo/echo", (ChatMessage("user", "hi"),))
            )
        finally:
            await binding.shutdown()


@pytest.mark.parametrize(
    "answer",
    [{"output": "hello"}, {"output": [{"type": "text", "data": "hi"}, "x"]}, {"text": "hello"}],
)
async def test_an_answer_without_an_output_list_is_a_502_naming_the_node(answer: Any) -> None:
    with pytest.raises(BackendError) as caught:
        await generate_from(answer)
    assert caught.value.status == 502 and caught.value.binding == "odd"
    assert "`output` list" in caught.value.message


async def test_an_empty_output_list_is_still_an_answer() -> None:
    """A node may answer nothing (an empty list): that is its answer, not a failure."""
    result = await generate_from({"output": [], "finish_reason": "stop"})
    assert result.outputs[0].text == "" and result.finish_reason == "stop"


async def test_odd_thoughts_and_finish_reason_are_not_passed_on() -> None:
    """A node's `thoughts` that is not a text and a `finish_reason` that is not one are read
    as none and "stop", as its stream's are (they reached clients as `reasoning_content: 5`
    and `finish_reason: "{'x': 1}"`)."""
    answer = {"output": [{"type": "text", "data": "hi", "thoughts": 5}], "finish_reason": {"x": 1}}
    result = await generate_from(answer)
    assert result.outputs[0].text == "hi" and result.outputs[0].thoughts is None, result
    assert result.finish_reason == "stop", result
