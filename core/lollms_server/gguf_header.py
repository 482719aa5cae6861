"""What a GGUF file's header says about its model, read in milliseconds.

The gguf package's `GGUFReader` builds a numpy view of every token string (2.4 s for
SmolLM2's 49k-token vocabulary on a small CPU), so this reader walks the same header layout
with `struct` over a memory map and keeps scalar values and array lengths. It needs no
package: `lollms-server models add` checks files with it, and lollms-llamacpp reads its
catalog with it (naming quantization types with the gguf package's enums). Tests check it
against GGUFReader.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = b"GGUF"
SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
STRING, ARRAY = 8, 9
SMALL_ARRAY = 64  # arrays up to this length keep their values; longer ones only their length


class GGUFError(ValueError):
    """The file is not a GGUF model file this reader understands."""


@dataclass(frozen=True)
class ArrayLength:
    """Stands for an array value too long to keep: its element count (and, for strings, the
    longest one's length in bytes)."""

    count: int
    longest: int = 0


@dataclass(frozen=True)
class GGUFHeader:
    """The key/value metadata and tensor summary of one GGUF file."""

    version: int
    metadata: dict[str, Any]
    tensor_count: int
    parameters: int
    tensor_types: dict[int, int] = field(default_factory=dict)  # ggml type -> element count

    def get(self, key: str, default: Any = None) -> Any:
        """A metadata value, or `default`."""
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str | None:
        """`general.architecture` (llama, qwen2, bert...)."""
        value = self.get("general.architecture")
        return value if isinstance(value, str) else None

    def arch_value(self, suffix: str) -> Any:
        """`<architecture>.<suffix>`, e.g. `context_length`."""
        return self.get(f"{self.architecture}.{suffix}") if self.architecture else None

    @property
    def vocab_size(self) -> int | None:
        """Number of tokens of the tokenizer."""
        tokens = self.get("tokenizer.ggml.tokens")
        if isinstance(tokens, ArrayLength):
            return tokens.count
        if isinstance(tokens, list):
            return len(tokens)
        size = self.arch_value("vocab_size")
        return size if isinstance(size, int) else None

    @property
    def longest_token_bytes(self) -> int | None:
        """The UTF-8 length of the vocabulary's longest token text."""
        tokens = self.get("tokenizer.ggml.tokens")
        if isinstance(tokens, ArrayLength):
            return tokens.longest or None
        if isinstance(tokens, list) and tokens:
            return max(len(str(token).encode()) for token in tokens)
        return None


class _Cursor:
    """Sequential little- or big-endian reads over a buffer."""

    def __init__(self, data: mmap.mmap, order: str) -> None:
        self.data = data
        self.order = order
        self.pos = 0

    def read(self, code: str) -> Any:
        fmt = self.order + code
        try:
            (value,) = struct.unpack_from(fmt, self.data, self.pos)
        except struct.error as exc:
            raise GGUFError(f"truncated header at byte {self.pos}") from exc
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        length = self.read("Q")
        end = self.pos + length
        if end > len(self.data):
            raise GGUFError(f"truncated string at byte {self.pos}")
        raw = self.data[self.pos : end]
        self.pos = end
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> int:
        """Skip `count` strings; the longest one's length."""
        longest = 0
        for _ in range(count):
            length = self.read("Q")
            self.pos += length
            longest = max(longest, length)
        if self.pos > len(self.data):
            raise GGUFError("truncated string array")
        return longest

    def value(self, kind: int) -> Any:
        if kind in SCALARS:
            return self.read(SCALARS[kind])
        if kind == STRING:
            return self.string()
        if kind != ARRAY:
            raise GGUFError(f"unknown value type {kind} at byte {self.pos}")
        item_kind = self.read("I")
        count = self.read("Q")
        if count <= SMALL_ARRAY:
            return [self.value(item_kind) for _ in range(count)]
        if item_kind == STRING:
            return ArrayLength(count, self.skip_strings(count))
        if item_kind in SCALARS:
            self.pos += count * struct.calcsize(SCALARS[item_kind])
        else:
            for _ in range(count):
                self.value(item_kind)
        return ArrayLength(count)


def read_header(path: Path) -> GGUFHeader:
    """Parse the header of the GGUF file at `path`; GGUFError if it is not one."""
    with path.open("rb") as handle:
        if handle.read(4) != MAGIC:
            raise GGUFError(f"{path.name} is not a GGUF file (bad magic)")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _parse(data)


def _parse(data: mmap.mmap) -> GGUFHeader:
    if len(data) < 8:
        raise GGUFError("truncated header at byte 4")
    (version,) = struct.unpack_from("<I", data, 4)
    order = "<" if version & 0xFFFF else ">"  # a big-endian file reads as a huge version
    cursor = _Cursor(data, order)
    cursor.pos = 4
    version = cursor.read("I")
    if version not in (2, 3):
        raise GGUFError(f"unsupported GGUF version {version}")
    tensor_count = cursor.read("Q")
    kv_count = cursor.read("Q")
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = cursor.string()
        metadata[key] = cursor.value(cursor.read("I"))
    parameters = 0
    types: dict[int, int] = {}
    for _ in range(tensor_count):
        cursor.string()  # name
        dims = cursor.read("I")
        count = 1
        for _ in range(dims):
            count *= cursor.read("Q")
        kind = cursor.read("I")
        cursor.read("Q")  # offset
        parameters += count
        types[kind] = types.get(kind, 0) + count
    return GGUFHeader(version, metadata, tensor_count, parameters, types)
