"""The GGUF files of the models folders: names, header metadata (cached), ModelInfo.

A model's name is its file's path relative to its folder, without `.gguf`, with `/` between
sub-folders (`SmolLM2-135M-Instruct.Q4_1`, `qwen/Qwen3-0.6B-Q8_0`). Clients' names are only
ever looked up among the listed files, so no name can reach outside the folders. Projector
files (`mmproj`) and the later parts of split models are not models of their own.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lollms_server.sdk import ModelInfo

from .gguf_header import GGUFError, GGUFHeader, quantization, read_header

log = logging.getLogger(__name__)
LATER_SPLIT_PART = re.compile(r"-(?!00001)\d{5}-of-\d{5}$")
PROJECTOR_TYPES = ("mmproj", "clip-vision")
POOLING = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}


@dataclass(frozen=True)
class ModelFile:
    """One GGUF model file and what its header says."""

    name: str
    path: Path
    size: int
    header: GGUFHeader | None
    error: str | None = None

    @property
    def declares_embedding(self) -> bool:
        """True when the header declares a pooling type (an embedding model)."""
        return self.header is not None and self.header.arch_value("pooling_type") is not None


class Catalog:
    """The models found in a list of folders; headers are re-read only when a file changes."""

    def __init__(self, folders: list[Path]) -> None:
        self.folders = folders
        self._headers: dict[Path, tuple[tuple[int, float], GGUFHeader | None, str | None]] = {}

    def existing_folders(self) -> list[Path]:
        """The configured folders that exist."""
        return [folder for folder in self.folders if folder.is_dir()]

    def scan(self) -> dict[str, ModelFile]:
        """Every model by name (the first folder wins when two hold the same name)."""
        found: dict[str, ModelFile] = {}
        for folder in self.existing_folders():
            for path in sorted(folder.rglob("*.gguf")):
                relative = path.relative_to(folder).with_suffix("")
                name = relative.as_posix()
                if name in found or not path.is_file() or _is_auxiliary(name):
                    continue
                model = self._model_file(name, path)
                if model is not None:
                    found[name] = model
        return found

    def _model_file(self, name: str, path: Path) -> ModelFile | None:
        stat = path.stat()
        stamp = (stat.st_size, stat.st_mtime)
        cached = self._headers.get(path)
        if cached is None or cached[0] != stamp:
            try:
                cached = (stamp, read_header(path), None)
            except (GGUFError, OSError, ValueError) as exc:
                log.warning("cannot read the GGUF header of %s: %s", path, exc)
                cached = (stamp, None, str(exc))
            self._headers[path] = cached
        _, header, error = cached
        if header is not None and header.get("general.type") in PROJECTOR_TYPES:
            return None  # a vision projector file, not a model of its own
        return ModelFile(name, path, stat.st_size, header, error)


def _is_auxiliary(name: str) -> bool:
    base = name.rsplit("/", 1)[-1].lower()
    return base.startswith("mmproj") or bool(LATER_SPLIT_PART.search(base))


def model_info(
    file: ModelFile, *, embedding: bool, tools: bool, loaded: bool, memory_bytes: int | None
) -> ModelInfo:
    """The ModelInfo of a file: real header metadata, file size as the memory estimate."""
    header = file.header
    details: dict[str, Any] = {"path": file.path.name, "format": "gguf"}
    if header is None:
        details["error"] = file.error or "unreadable header"
        return ModelInfo(
            name=file.name,
            size_bytes=file.size,
            memory_bytes=memory_bytes or file.size,
            loaded=loaded,
            details=details,
        )
    template = header.get("tokenizer.chat_template")
    pooling = header.arch_value("pooling_type")
    details.update(
        title=header.get("general.name"),
        size_label=header.get("general.size_label"),
        chat_template=template if isinstance(template, str) else None,
        tokenizer=header.get("tokenizer.ggml.model"),
        vocab_size=header.vocab_size,
        embedding_length=header.arch_value("embedding_length"),
        block_count=header.arch_value("block_count"),
        pooling=POOLING.get(pooling, pooling) if pooling is not None else None,
        embedding=embedding,
        gguf_version=header.version,
    )
    capabilities = {"ttt", "stream"} | ({"embeddings"} if embedding else set())
    capabilities |= {"tools"} if tools else set()
    context = header.arch_value("context_length")
    return ModelInfo(
        name=file.name,
        family=header.architecture,
        size_bytes=file.size,
        parameters=header.parameters,
        quantization=quantization(header),
        context_length=context if isinstance(context, int) else None,
        capabilities=frozenset(capabilities),
        memory_bytes=memory_bytes or file.size,
        loaded=loaded,
        details=details,
    )
