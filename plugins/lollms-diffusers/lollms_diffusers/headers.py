"""Reading model files without torch: safetensors headers, JSON configs, weight totals."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEADER_LIMIT = 100 * 1024 * 1024
DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}


@dataclass(frozen=True)
class Weights:
    """What the weight files of a model hold."""

    size_bytes: int = 0
    parameters: int = 0
    dtypes: frozenset[str] = frozenset()
    exact: bool = True  # False when a .bin file's parameters were guessed from its size


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file (tensor names, dtypes, shapes)."""
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{path.name}: too short for a safetensors file")
        (length,) = struct.unpack("<Q", prefix)
        if not 2 <= length <= HEADER_LIMIT:
            raise ValueError(f"{path.name}: not a safetensors file (header length {length})")
        header = json.loads(handle.read(length))
    if not isinstance(header, dict):
        raise ValueError(f"{path.name}: safetensors header is not an object")
    return header


def safetensors_weights(path: Path, header: Mapping[str, Any] | None = None) -> Weights:
    """Parameter count and dtypes of a .safetensors file, from its header."""
    header = safetensors_header(path) if header is None else header
    parameters = 0
    dtypes: set[str] = set()
    for key, info in header.items():
        if key == "__metadata__" or not isinstance(info, Mapping):
            continue
        parameters += math.prod(int(d) for d in info.get("shape", []))
        dtypes.add(str(info.get("dtype", "")))
    return Weights(path.stat().st_size, parameters, frozenset(dtypes))


def sum_weights(parts: Iterable[Weights]) -> Weights:
    """The weights of several files together."""
    total = Weights()
    for part in parts:
        total = Weights(
            total.size_bytes + part.size_bytes,
            total.parameters + part.parameters,
            total.dtypes | part.dtypes,
            total.exact and part.exact,
        )
    return total


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file (ValueError when it is not one)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


def optional_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or {} when it is missing or not one."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return {}
