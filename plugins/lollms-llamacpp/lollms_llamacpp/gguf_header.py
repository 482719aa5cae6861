"""GGUF headers: the core's reader (`lollms_server.gguf_header`) plus quantization names."""

from __future__ import annotations

from lollms_server.sdk import ArrayLength, GGUFError, GGUFHeader, read_header

__all__ = ["ArrayLength", "GGUFError", "GGUFHeader", "quantization", "read_header"]


def quantization(header: GGUFHeader) -> str | None:
    """The file type (Q4_1, Q4_K_M, F16, F32...), else the most used tensor type."""
    import gguf  # imports numpy (~0.1-0.3 s): only once a model file is read, not at start-up

    file_type = header.get("general.file_type")
    if isinstance(file_type, int):
        try:
            name = gguf.LlamaFileType(file_type).name
        except ValueError:
            name = None
        if name and name != "GUESSED":
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
    if not header.tensor_types:
        return None
    most = max(header.tensor_types, key=lambda t: header.tensor_types[t])
    try:
        return gguf.GGMLQuantizationType(most).name
    except ValueError:
        return f"type {most}"
