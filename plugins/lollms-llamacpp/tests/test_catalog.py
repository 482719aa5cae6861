"""Model names, folders and ModelInfo of the llamacpp binding (no model process started)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from lollms_llamacpp import LlamaCppBinding
from lollms_llamacpp.settings import LlamaCppSettings
from lollms_llamacpp.tiny_gguf import CONTEXT
from marshmallow import ValidationError

from lollms_server.app import create_app
from lollms_server.config import parse_config, prepare_data_dir
from lollms_server.errors import BackendUnavailable, ModelNotFound
from lollms_server.keys import REGISTRY
from lollms_server.plugins import load_plugins
from lollms_server.testing import build_binding


@pytest.fixture
def folder(tmp_path: Path, tiny_models: Path) -> Path:
    """A models folder with a sub-folder, a projector and a split model's later part."""
    root = tmp_path / "models"
    (root / "family").mkdir(parents=True)
    shutil.copy(tiny_models / "tiny.gguf", root / "tiny.gguf")
    shutil.copy(tiny_models / "tiny.gguf", root / "family" / "nested.gguf")
    shutil.copy(tiny_models / "tiny.gguf", root / "mmproj-tiny-f16.gguf")
    shutil.copy(tiny_models / "tiny.gguf", root / "big-00002-of-00003.gguf")
    (root / "notes.txt").write_text("not a model")
    (root / "broken.gguf").write_bytes(b"GGUF\x03\0\0\0 cut short")
    return root


def binding_for(*folders: Path, **settings: object) -> LlamaCppBinding:
    """A binding over `folders`."""
    raw = {"models_folders": [str(f) for f in folders], **settings}
    binding = build_binding(LlamaCppBinding, "local", raw)
    assert isinstance(binding, LlamaCppBinding)
    return binding


async def test_names_are_paths_relative_to_the_folder(folder: Path) -> None:
    """Sub-folders use '/', projectors and later split parts are not models."""
    names = {m.name for m in await binding_for(folder).list_models()}
    assert names == {"tiny", "family/nested", "broken"}


async def test_model_info_comes_from_the_header(folder: Path) -> None:
    """Real metadata: family, parameters, quantization, context, template, memory estimate."""
    models = {m.name: m for m in await binding_for(folder).list_models()}
    tiny = models["tiny"]
    assert tiny.family == "llama"
    assert tiny.quantization == "F32"
    assert tiny.context_length == CONTEXT
    assert tiny.parameters is not None and 100_000 < tiny.parameters < 200_000
    assert tiny.size_bytes == (folder / "tiny.gguf").stat().st_size
    assert tiny.memory_bytes == tiny.size_bytes and not tiny.loaded
    assert "<|im_start|>" in tiny.details["chat_template"]
    assert tiny.capabilities == {"ttt", "stream"}
    assert "error" in models["broken"].details and models["broken"].family is None


async def test_embedding_models_setting_and_header(folder: Path, tiny_models: Path) -> None:
    """A model is an embedding model when listed in the setting or when its header says so."""
    shutil.copy(tiny_models / "tiny-embed.gguf", folder / "embedder.gguf")
    binding = binding_for(folder, embedding_models=["tiny"])
    models = {m.name: m for m in await binding.list_models()}
    assert "embeddings" in models["tiny"].capabilities
    assert "embeddings" in models["embedder"].capabilities
    assert models["embedder"].details["pooling"] == "mean"
    assert "embeddings" not in models["family/nested"].capabilities


async def test_first_folder_wins(folder: Path, tmp_path: Path, tiny_models: Path) -> None:
    """Two folders holding the same name: the first one's file is used."""
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tiny_models / "tiny-embed.gguf", other / "tiny.gguf")
    shutil.copy(tiny_models / "tiny-embed.gguf", other / "only-here.gguf")
    binding = binding_for(folder, other)
    files = await binding._scan()
    assert files["tiny"].path == folder / "tiny.gguf"
    assert files["only-here"].path == other / "only-here.gguf"


@pytest.mark.parametrize(
    "name", ["../models/tiny", "/etc/passwd", "tiny.gguf", "family/../tiny", "nope", ""]
)
async def test_names_never_escape_the_folder(folder: Path, name: str) -> None:
    """Only listed names resolve; anything else is a 404 before any process starts."""
    binding = binding_for(folder)
    with pytest.raises(ModelNotFound):
        await binding.load(name)
    assert binding._processes == {}


async def test_missing_folder_is_unavailable(tmp_path: Path) -> None:
    """No models folder: health down and list_models raises, naming the instance."""
    binding = binding_for(tmp_path / "absent")
    health = await binding.health()
    assert health.state == "down" and "absent" in health.detail
    with pytest.raises(BackendUnavailable) as caught:
        await binding.list_models()
    assert caught.value.binding == "local"


def test_settings_validation() -> None:
    """Defaults load; extra_args may not override what the binding manages."""
    loaded = LlamaCppSettings().load({})
    assert loaded.n_parallel == 2 and loaded.models_folders == []
    with pytest.raises(ValidationError, match="set by the binding"):
        LlamaCppSettings().load({"extra_args": {"port": 1234}})
    with pytest.raises(ValidationError):
        LlamaCppSettings().load({"n_parallel": 0})


async def test_default_folder_follows_the_server_data_dir(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    """Without models_folders, an instance served by the app uses <data dir>/models/ttt."""
    config = parse_config(
        {
            "server": {"data_dir": str(tmp_path / "data")},
            "bindings": {"local": {"type": "llamacpp"}},
        }
    )
    prepare_data_dir(config)
    app = create_app(config, load_plugins())
    client = await aiohttp_client(app)
    binding = app[REGISTRY].get("local")
    assert isinstance(binding, LlamaCppBinding)
    assert binding.folders() == [tmp_path / "data" / "models" / "ttt"]
    response = await client.get("/api/v1/list_active_bindings")
    assert (await response.json())["bindings"]["local"]["health"]["state"] == "up"


def test_plugin_is_found_by_entry_point() -> None:
    """Installing the package is enough: the core finds the `llamacpp` type."""
    plugins = load_plugins()
    assert plugins.binding_classes["llamacpp"] is LlamaCppBinding
    info = plugins.plugin_of("llamacpp")
    assert info is not None and info.distribution == "lollms-llamacpp" and info.error is None
