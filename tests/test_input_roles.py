"""An input role a binding does not honour is a 400 naming it, on every face (one check:
`Binding.check_input_roles` in `GenerationService.prepare`); never silently ignored."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from conftest import ECHO_DEFAULTS, MakeClient, MakeConfig

from lollms_server.bindings import Binding
from lollms_server.builtin.echo import EchoBinding
from lollms_server.hookspecs import hookimpl
from lollms_server.plugins import load_plugins

Client = TestClient[Any, Any]
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
PNG = base64.b64encode(PNG_BYTES).decode()


class Picky(EchoBinding):
    """Echo that honours only an input image for i2i and nothing else."""

    name = "picky"
    input_roles = {"i2i": frozenset({"input_image"})}


class PickyPlugin:
    @hookimpl
    def register_bindings(self) -> list[type[Binding]]:
        return [Picky]


@pytest.fixture
async def client(make_client: MakeClient, make_config: MakeConfig) -> Client:
    """`picky` next to `echo` (which declares no roles and gets every input)."""
    config = make_config(
        {
            "bindings": {
                "echo": {"type": "echo", "default_model": "echo"},
                "picky": {"type": "picky", "default_model": "echo"},
            },
            "defaults": dict(ECHO_DEFAULTS),
        }
    )
    return await make_client(config, plugins=load_plugins(extra={"picky": PickyPlugin()}))


def body(binding: str, *roles: str) -> dict[str, Any]:
    """An i2i generate body with one image per role."""
    images = [{"type": "image", "role": role, "data": PNG} for role in roles]
    text = {"type": "text", "role": "user_prompt", "data": "a cat"}
    return {"binding_name": binding, "generation_type": "i2i", "input_data": [text, *images]}


async def test_an_unhonoured_role_is_a_400_naming_it(client: Client) -> None:
    response = await client.post("/api/v1/generate", json=body("picky", "style_reference"))
    error = (await response.json())["error"]
    assert response.status == 400, error
    assert "style_reference" in error["message"] and "i2i" in error["message"]
    assert error["param"] == "input_data"


async def test_honoured_roles_and_undeclaring_bindings_pass(client: Client) -> None:
    assert (await client.post("/api/v1/generate", json=body("picky", "input_image"))).status == 200
    echo = body("echo", "input_image", "style_reference")
    assert (await client.post("/api/v1/generate", json=echo)).status == 200


async def test_openai_image_edit_with_an_unhonoured_mask_is_a_400(client: Client) -> None:
    form = FormData()
    form.add_field("image", PNG_BYTES, filename="a.png", content_type="image/png")
    form.add_field("mask", PNG_BYTES, filename="m.png", content_type="image/png")
    form.add_field("prompt", "a cat")
    form.add_field("model", "picky/echo")
    response = await client.post("/v1/images/edits", data=form)
    assert response.status == 400, await response.text()
    assert "mask_image" in (await response.json())["error"]["message"]
