"""A tiny random whisper checkpoint in transformers format (~0.5 MB), built offline.

Byte-level BPE without merges, whisper's special and timestamp tokens, a 1-layer model of
width 16. Its transcripts are noise: it proves the engine's plumbing, not recognition.
"""

from __future__ import annotations

from pathlib import Path

SPECIALS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)


def build_tiny_whisper(folder: Path) -> Path:
    """Write the checkpoint (config, weights, tokenizer, feature extractor) into `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    torch.manual_seed(0)
    vocab = {char: index for index, char in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([*SPECIALS, *(f"<|{i * 0.02:.2f}|>" for i in range(1501))])
    end = "<|endoftext|>"
    fast = WhisperTokenizerFast(
        tokenizer_object=tokenizer, bos_token=end, eos_token=end, unk_token=end, pad_token=end
    )
    ids = {token: fast.convert_tokens_to_ids(token) for token in SPECIALS}
    config = WhisperConfig(
        vocab_size=len(fast),
        num_mel_bins=80,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=64,
        pad_token_id=ids[end],
        bos_token_id=ids[end],
        eos_token_id=ids[end],
        decoder_start_token_id=ids["<|startoftranscript|>"],
    )
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        eos_token_id=ids[end],
        pad_token_id=ids[end],
        bos_token_id=ids[end],
        no_timestamps_token_id=ids["<|notimestamps|>"],
        max_length=20,
        is_multilingual=False,
    )
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), fast).save_pretrained(folder)
    return folder
