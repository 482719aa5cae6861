"""Write a tiny random-weight llama GGUF (~0.5 MB) for tests: it loads in llama.cpp and talks.

The vocabulary has the 256 `<0xNN>` byte tokens (without them a non-ASCII prompt aborts
llama.cpp), printable ASCII and a few words. Embedding dimension 0 is a constant and control/byte
tokens get a large negative weight on it in the output layer, so replies are printable ASCII and
always run to `max_tokens` (finish reason `length`). Same seed, same bytes.
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
WORDS = ("hello", "world", "the", "and", "lollms", "server", "tiny", "model")
EMBED, HEADS, BLOCKS, FFN, CONTEXT = 64, 4, 2, 128, 2048


def vocabulary() -> tuple[list[str], list[int]]:
    """Tokens and their llama token types (1 normal, 2 unknown, 3 control, 6 byte)."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [2, 3, 3]
    tokens += [f"<0x{i:02X}>" for i in range(256)]
    types += [6] * 256
    normal = ["\u2581"] + [chr(c) for c in range(33, 127)] + [f"\u2581{w}" for w in WORDS]
    tokens += normal
    types += [1] * len(normal)
    return tokens, types


def write_tiny_gguf(
    path: Path, seed: int = 0, embedding: bool = False, chat_template: str = CHATML_TEMPLATE
) -> Path:
    """Write the model to `path` and return it; `embedding` marks it for pooling use."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens, types = vocabulary()
    vocab = len(tokens)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(EMBED)
    writer.add_block_count(BLOCKS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(EMBED // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    if embedding:
        writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * vocab)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_chat_template(chat_template)

    token_embd = weight(vocab, EMBED)
    token_embd[:, 0] = 8.0
    output = weight(vocab, EMBED)
    output[:, 0] = 0.0
    output[[i for i, t in enumerate(types) if t != 1], 0] = -50.0
    writer.add_tensor("token_embd.weight", token_embd)
    writer.add_tensor("output_norm.weight", np.ones(EMBED, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    for block in range(BLOCKS):
        prefix = f"blk.{block}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", np.ones(EMBED, dtype=np.float32))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", np.ones(EMBED, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{prefix}.{name}.weight", weight(EMBED, EMBED))
        writer.add_tensor(f"{prefix}.ffn_gate.weight", weight(FFN, EMBED))
        writer.add_tensor(f"{prefix}.ffn_up.weight", weight(FFN, EMBED))
        writer.add_tensor(f"{prefix}.ffn_down.weight", weight(EMBED, FFN))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
