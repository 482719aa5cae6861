"""Settings, capabilities and key handling of the openai binding (no server needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lollms_openai import OpenAIBinding
from lollms_openai.media import image_fields
from lollms_openai.settings import OpenAISettings
from marshmallow import ValidationError

from lollms_server.bindings import ChatMessage, GenerationRequest
from lollms_server.config import parse_config, prepare_data_dir
from lollms_server.errors import BackendUnavailable, ModelNotFound, NotSupported
from lollms_server.plugins import load_plugins
from lollms_server.registry import build_registry
from lollms_server.security.principal import Principal, reset_current, set_current
from lollms_server.testing import build_binding, free_port


def test_plugin_is_found_by_entry_point() -> None:
    """Installing the package is enough: the core finds the `openai` type."""
    plugins = load_plugins()
    assert plugins.binding_classes["openai"] is OpenAIBinding
    info = plugins.plugin_of("openai")
    assert info is not None and info.distribution == "lollms-openai" and info.error is None


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"base_url": "ftp://example.com"}, "http"),
        ({"base_url": "not a url"}, "http"),
        ({"api_key": "a", "api_key_env": "B"}, "not both"),
        ({"api_key_env": "1BAD"}, "String does not match"),
        ({"capabilities": ["ttt", "video"]}, "Must be one of"),
        ({"retries": -1}, "greater than or equal"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any], problem: str) -> None:
    """Invalid settings fail validation with a message saying why."""
    with pytest.raises(ValidationError, match=problem):
        OpenAISettings().load(settings)


def test_capabilities_narrow_the_instance(tmp_path: Path) -> None:
    """An instance limited to text is not routed images, while the type keeps them all."""
    raw = {
        "server": {"data_dir": str(tmp_path)},
        "bindings": {"chat": {"type": "openai", "capabilities": ["ttt", "stream"]}},
    }
    config = parse_config(raw)
    prepare_data_dir(config)
    registry = build_registry(config, load_plugins())
    binding = registry.get("chat")
    assert binding.capabilities == {"ttt", "stream"}
    assert "tti" in OpenAIBinding.capabilities


async def test_image_request_refused_for_a_text_only_instance(tmp_path: Path) -> None:
    """The core refuses `tti` on a narrowed instance before calling it."""
    raw = {
        "server": {"data_dir": str(tmp_path)},
        "bindings": {"chat": {"type": "openai", "capabilities": ["ttt"]}},
    }
    config = parse_config(raw)
    prepare_data_dir(config)
    registry = build_registry(config, load_plugins())
    token = set_current(Principal(role="admin"))  # a request's caller: work for nobody is a 403
    try:
        with pytest.raises(NotSupported, match="cannot do 'tti'"):
            await registry.resolve("tti", "chat", "dall-e-3")
    finally:
        reset_current(token)


def test_key_is_masked_in_public_settings() -> None:
    """public_settings (what list_bindings shows) never holds the key."""
    binding = build_binding(OpenAIBinding, "x", {"api_key": "sk-secret-value"})
    assert binding.public_settings()["api_key"] == "***"
    assert "sk-secret-value" not in repr(binding.public_settings())
    assert "sk-secret-value" not in repr(binding.upstream)  # type: ignore[attr-defined]


async def test_api_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key comes from the named variable; a missing variable is a clear 503."""
    monkeypatch.setenv("LOLLMS_TEST_OPENAI_KEY", "sk-from-env")
    settings = {"api_key_env": "LOLLMS_TEST_OPENAI_KEY", "base_url": "http://127.0.0.1:9/v1"}
    binding = build_binding(OpenAIBinding, "x", settings)
    assert binding.public_settings()["api_key_env"] == "LOLLMS_TEST_OPENAI_KEY"
    assert binding.upstream._api_key == "sk-from-env"  # type: ignore[attr-defined]
    monkeypatch.delenv("LOLLMS_TEST_OPENAI_KEY")
    unset = build_binding(OpenAIBinding, "x", settings)
    health = await unset.health()
    assert health.state == "down" and "LOLLMS_TEST_OPENAI_KEY" in health.detail
    with pytest.raises(BackendUnavailable, match="LOLLMS_TEST_OPENAI_KEY"):
        await unset.list_models()


async def test_allow_list_refuses_other_models_without_network() -> None:
    """With `models` set, another name is a 404 even though no server is reachable."""
    settings = {"base_url": f"http://127.0.0.1:{free_port()}/v1", "models": ["gpt-4o-mini"]}
    binding = build_binding(OpenAIBinding, "x", settings)
    request = GenerationRequest("ttt", "gpt-5", (ChatMessage("user", "hi"),))
    with pytest.raises(ModelNotFound, match="gpt-4o-mini"):
        await binding.generate(request)


def test_image_fields() -> None:
    """Width and height become `size`; b64_json is always asked for; extras pass on."""
    request = GenerationRequest(
        "tti",
        "dall-e-3",
        (ChatMessage("user", "a cat"),),
        parameters={"width": 64, "height": 32, "n": 2, "seed": 5, "quality": "hd", "x": 1},
    )
    assert image_fields(request) == {
        "prompt": "a cat",
        "response_format": "b64_json",
        "n": 2,
        "size": "64x32",
        "seed": 5,
        "quality": "hd",
    }
