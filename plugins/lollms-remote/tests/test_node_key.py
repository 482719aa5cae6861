"""A key the node refuses: the gateway's 502 naming the instance, never the client's 401, and
the key never in the message."""

from __future__ import annotations

import pytest
from lollms_remote import LollmsRemoteBinding
from lollms_remote.settings import RemoteSettings

from lollms_server.bindings import ChatMessage, GenerationRequest
from lollms_server.errors import BackendError

from .conftest import Node

BAD_KEY = "lollms_0123456789ab_notarealsecretatall"


async def test_refused_node_key_is_a_502_without_the_key(echo_node: Node) -> None:
    settings = RemoteSettings().load({"base_url": echo_node.url, "api_key": BAD_KEY})
    binding = LollmsRemoteBinding("badkey", settings)
    await binding.startup()
    request = GenerationRequest("ttt", "echo/echo", (ChatMessage("user", "hi"),))
    try:
        with pytest.raises(BackendError) as caught:
            await binding.generate(request)
    finally:
        await binding.shutdown()
    assert caught.value.status == 502 and caught.value.binding == "badkey"
    assert "credentials" in caught.value.message and BAD_KEY not in caught.value.message
    assert binding.public_settings()["api_key"] == "***" and BAD_KEY not in repr(binding.upstream)
