"""Instance settings as the server validates them, and the folders they lead to."""

from __future__ import annotations

from pathlib import Path

import pytest
from lollms_audio import AudioBinding

from lollms_server.errors import ConfigError
from lollms_server.sdk import BindingContext
from lollms_server.testing import build_binding


def test_defaults() -> None:
    """No settings: packaged models and espeak-ng on, WAV, CPU, word timestamps, no VAD."""
    binding = build_binding(AudioBinding, "audio", {})
    config = binding.config
    assert config["packaged_models"] and config["espeak"] and config["word_timestamps"]
    assert not config["vad_filter"] and config["default_format"] == "wav"
    assert config["device"] == "cpu" and config["compute_type"] == "auto"
    assert binding.capabilities == {"tts", "stt", "audio2audio", "load_unload"}


@pytest.mark.parametrize(
    "bad",
    [
        {"default_format": "wma"},
        {"device": "tpu"},
        {"espeak_voice": "../en"},
        {"threads": -1},
        {"beam_size": 0},
        {"tts_folders": "not-a-list"},
        {"unknown_key": 1},
    ],
)
def test_bad_settings_are_config_errors(bad: dict[str, object]) -> None:
    """Every wrong value fails at start-up, naming the key."""
    with pytest.raises(ConfigError, match=next(iter(bad))):
        build_binding(AudioBinding, "audio", bad)


def test_folders_follow_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default folders are <data dir>/models/{tts,stt}; configured ones win."""
    monkeypatch.setenv("LOLLMS_DATA_DIR", str(tmp_path / "env"))
    binding = build_binding(AudioBinding, "audio", {})
    assert binding.folders("tts") == [tmp_path / "env" / "models" / "tts"]
    binding = build_binding(AudioBinding, "audio", {}, BindingContext(tmp_path / "server"))
    assert binding.folders("stt") == [tmp_path / "server" / "models" / "stt"]
    configured = build_binding(AudioBinding, "audio", {"tts_folders": [str(tmp_path / "v")]})
    assert configured.folders("tts") == [tmp_path / "v"]
