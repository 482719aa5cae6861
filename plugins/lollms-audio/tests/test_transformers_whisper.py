"""The optional transformers engine on a tiny random whisper checkpoint (real pipeline code)."""

from __future__ import annotations

import gc
import importlib.util
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from lollms_audio import AudioBinding

from lollms_server.bindings import GenerationRequest, InputItem
from lollms_server.testing import backend_unavailable, started_binding

from .conftest import HELLO, wav_info
from .tiny_whisper import build_tiny_whisper

NAME = "tiny-hf"


@pytest.fixture(scope="session")
def stt_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An stt folder holding the tiny transformers checkpoint."""
    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            backend_unavailable(request, f"{module} is not installed (lollms-audio[transformers])")
    folder = tmp_path_factory.mktemp("stt")
    build_tiny_whisper(folder / NAME)
    return folder


@pytest_asyncio.fixture
async def binding(
    stt_folder: Path, model_folders: dict[str, list[str]], packaged: None
) -> AsyncIterator[AudioBinding]:
    """An instance whose stt folder holds the checkpoint."""
    settings = {**model_folders, "stt_folders": [str(stt_folder)], "espeak": False}
    async with started_binding(AudioBinding, "audio", settings) as started:
        assert isinstance(started, AudioBinding)
        yield started


async def test_listed_as_a_transformers_model(binding: AudioBinding) -> None:
    """The folder is found, before the packaged model, as an English-only checkpoint."""
    models = await binding.list_models()
    info = next(m for m in models if m.name == NAME)
    assert info.details["engine"] == "transformers" and info.details["multilingual"] is False
    recognizers = [m.name for m in models if "stt" in m.capabilities]
    assert recognizers[0] == NAME


async def test_transcribes_22khz_wav_through_the_pipeline(
    binding: AudioBinding, say: Callable[[str], bytes]
) -> None:
    """A 22.05 kHz WAV is decoded to 16 kHz floats and runs through the ASR pipeline."""
    audio = say(HELLO)
    duration = wav_info(audio)[2]
    item = InputItem("audio", role="input_audio", data=audio)
    result = await binding.generate(GenerationRequest("stt", NAME, inputs=(item,)))
    (output,) = result.outputs
    assert output.type == "text" and isinstance(output.text, str)
    metadata = output.metadata
    assert metadata["model"] == NAME and metadata["language"] == "en"
    assert metadata["duration"] == pytest.approx(duration, abs=0.01)
    for segment in metadata["segments"]:
        assert 0 <= segment["start"] <= segment["end"] <= metadata["duration"]  # ms-rounded
    engine = binding._engines[NAME]
    model_ref = weakref.ref(engine.pipe.model)  # type: ignore[union-attr]
    await binding.unload(NAME)
    gc.collect()
    assert model_ref() is None, "the transformers model is still referenced"
