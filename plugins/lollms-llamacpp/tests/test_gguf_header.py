"""The fast GGUF header reader, checked against the gguf package's GGUFReader."""

from __future__ import annotations

from pathlib import Path

import pytest
from lollms_llamacpp.gguf_header import ArrayLength, GGUFError, quantization, read_header
from lollms_llamacpp.tiny_gguf import BLOCKS, CONTEXT, EMBED, FFN, vocabulary


def expected_parameters() -> int:
    """Parameter count of the tiny model, from its shapes."""
    vocab = len(vocabulary()[0])
    per_block = 2 * EMBED + 4 * EMBED * EMBED + 3 * FFN * EMBED
    return 2 * vocab * EMBED + EMBED + BLOCKS * per_block


def test_tiny_header_values(tiny_models: Path) -> None:
    """Architecture, size, type, context, vocabulary, template, pooling of the tiny files."""
    header = read_header(tiny_models / "tiny.gguf")
    assert header.architecture == "llama"
    assert header.parameters == expected_parameters()
    assert quantization(header) == "F32"
    assert header.arch_value("context_length") == CONTEXT
    assert header.vocab_size == len(vocabulary()[0])
    assert header.longest_token_bytes == len("\u2581lollms".encode())
    assert isinstance(header.get("tokenizer.ggml.tokens"), ArrayLength)
    assert "<|im_start|>" in header.get("tokenizer.chat_template")
    assert header.arch_value("pooling_type") is None
    assert read_header(tiny_models / "tiny-embed.gguf").arch_value("pooling_type") == 1


@pytest.mark.parametrize("name", ["tiny.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"])
def test_agrees_with_gguf_reader(models_dir: Path, name: str) -> None:
    """Every scalar and string field, the array lengths and the tensor sizes agree."""
    from gguf import GGUFReader

    path = models_dir / name
    ours = read_header(path)
    theirs = GGUFReader(path, "r")
    assert ours.tensor_count == len(theirs.tensors)
    assert ours.parameters == sum(int(t.n_elements) for t in theirs.tensors)
    for key, field in theirs.fields.items():
        if key.startswith("GGUF."):
            continue
        value = ours.get(key)
        if isinstance(value, ArrayLength):
            assert value.count == len(field.data), key
            if isinstance(field.contents(0), str):
                spelled = [len(str(text).encode()) for text in field.contents()]
                assert value.longest == max(spelled), key
        else:
            assert value == pytest.approx(field.contents()), key


def test_not_gguf_and_truncated(tmp_path: Path, tiny_models: Path) -> None:
    """A file with the wrong magic or cut short is a GGUFError, not a crash."""
    wrong = tmp_path / "wrong.gguf"
    wrong.write_bytes(b"NOPE" + b"\0" * 64)
    with pytest.raises(GGUFError, match="magic"):
        read_header(wrong)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes((tiny_models / "tiny.gguf").read_bytes()[:3000])
    with pytest.raises(GGUFError, match="truncated"):
        read_header(cut)
