"""Settings that name models: names no folder holds, per-model extra_args, tool templates."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from lollms_llamacpp import LlamaCppBinding
from lollms_llamacpp.settings import LlamaCppSettings
from lollms_llamacpp.tiny_gguf import CHATML_TEMPLATE, write_tiny_gguf
from marshmallow import ValidationError

from lollms_server.testing import build_binding, serve_binding

from .conftest import SMOL, TINY, TINY_EMBED

MISSING_EMBED = "nomic-embed-text-v1.5.Q8_0"


@pytest.fixture
def folder(tmp_path: Path, tiny_models: Path) -> Path:
    """A models folder of our own (tests add files to it)."""
    root = tmp_path / "models"
    root.mkdir()
    for name in (TINY, TINY_EMBED):
        shutil.copy(tiny_models / f"{name}.gguf", root / f"{name}.gguf")
    return root


async def test_models_named_in_settings_but_absent_are_reported(
    folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A warning at start-up and a degraded health naming them; up once the files arrive."""
    settings = {
        "models_folders": [str(folder)],
        "embedding_models": [TINY_EMBED, MISSING_EMBED],
        "chat_templates": {"ghost": "chatml-tools", TINY: "chatml-tools"},
        "model_extra_args": {"phantom": {"n_batch": 64}},
    }
    with caplog.at_level(logging.WARNING, logger="lollms_llamacpp"):
        async with serve_binding(LlamaCppBinding, "local", settings, tmp_path / "data") as client:
            warned = [
                r.getMessage() for r in caplog.records if r.name.startswith("lollms_llamacpp")
            ]
            assert any(
                f"embedding_models: {MISSING_EMBED!r}" in line
                and "chat_templates: 'ghost'" in line
                and "model_extra_args: 'phantom'" in line
                and str(folder) in line
                for line in warned
            ), warned
            assert not any(f"'{TINY}'" in line or f"'{TINY_EMBED}'" in line for line in warned)
            health = (await (await client.get("/api/v1/list_active_bindings")).json())["bindings"][
                "local"
            ]
            assert health["health"]["state"] == "degraded"
            detail = health["health"]["detail"]
            assert f"embedding_models: {MISSING_EMBED!r}" in detail
            assert "chat_templates: 'ghost'" in detail and "model_extra_args: 'phantom'" in detail
            # the models that exist are still listed and served
            listed = await (await client.get("/api/v1/list_available_models/local")).json()
            assert {m["name"] for m in listed["models"]} == {TINY, TINY_EMBED}
            for name in (MISSING_EMBED, "ghost", "phantom"):
                write_tiny_gguf(folder / f"{name}.gguf")
            health = (await (await client.get("/api/v1/list_active_bindings")).json())["bindings"][
                "local"
            ]
            assert health["health"]["state"] == "up", health


async def test_tools_capability_follows_the_chat_template(folder: Path, models_dir: Path) -> None:
    """`tools` is listed for a model whose template (configured or its own) renders tools."""
    tools_template = (folder / "own.jinja").resolve()
    tools_template.write_text(
        "{% if tools %}{{ tools | tojson }}{% endif %}" + CHATML_TEMPLATE, encoding="utf-8"
    )
    write_tiny_gguf(folder / "own-tools.gguf", chat_template=tools_template.read_text())
    shutil.copy(models_dir / f"{SMOL}.gguf", folder / f"{SMOL}.gguf")
    plain = await build_binding(
        LlamaCppBinding, "l", {"models_folders": [str(folder)]}
    ).list_models()
    capabilities = {m.name: m.capabilities for m in plain}
    assert "tools" in capabilities["own-tools"]  # the GGUF's own template lists tools
    assert "tools" not in capabilities[SMOL] and "tools" not in capabilities[TINY]
    configured = build_binding(
        LlamaCppBinding,
        "l",
        {
            "models_folders": [str(folder)],
            "chat_templates": {SMOL: "chatml-tools", TINY_EMBED: str(tools_template)},
            "chat_template": CHATML_TEMPLATE,  # inline text without tools, for the others
        },
    )
    capabilities = {m.name: m.capabilities for m in await configured.list_models()}
    assert "tools" in capabilities[SMOL] and "tools" in capabilities[TINY_EMBED]
    assert "tools" not in capabilities[TINY] and "tools" not in capabilities["own-tools"]


def test_model_extra_args_validation() -> None:
    """Per-model extra_args follow extra_args' rules, naming the model."""
    loaded = LlamaCppSettings().load({"model_extra_args": {"m": {"cache_type_k": "GGML_TYPE_F16"}}})
    assert loaded.model_extra_args == {"m": {"cache_type_k": "GGML_TYPE_F16"}}
    with pytest.raises(ValidationError, match="'m': 'port' is set by the binding"):
        LlamaCppSettings().load({"model_extra_args": {"m": {"port": 1}}})
    with pytest.raises(ValidationError, match="numbers, strings or booleans"):
        LlamaCppSettings().load({"model_extra_args": {"m": {"n_batch": [1]}}})


def test_model_extra_args_override_extra_args(folder: Path) -> None:
    """The worker's --extra holds extra_args with the model's own entries over them."""
    binding = build_binding(
        LlamaCppBinding,
        "l",
        {
            "models_folders": [str(folder)],
            "extra_args": {"cache_type_k": "GGML_TYPE_Q8_0", "n_batch": 256},
            "model_extra_args": {TINY_EMBED: {"cache_type_k": "GGML_TYPE_F16"}},
        },
    )
    assert isinstance(binding, LlamaCppBinding)
    assert binding.extra_args(TINY_EMBED) == {"cache_type_k": "GGML_TYPE_F16", "n_batch": 256}
    assert binding.extra_args(TINY) == {"cache_type_k": "GGML_TYPE_Q8_0", "n_batch": 256}
