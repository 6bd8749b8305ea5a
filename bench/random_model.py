"""A random-weight model of a named shape, for throughput runs on nodes with no model hub.

    python -m bench.random_model --tokenizer DIR --shape smollm2-1.7b --out DIR

Speed depends on the shape, not on the weights, and the benchmarks decode a fixed number
of tokens (EOS ignored), so random weights measure what real ones would. The tokenizer
(and chat template) is copied from ``--tokenizer``; its vocabulary sets the shape's.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

# Llama-architecture shapes of the SmolLM2 family (their published configs).
SHAPES = {
    "smollm2-135m": dict(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0,
    ),
    "smollm2-360m": dict(
        hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
        num_attention_heads=15, num_key_value_heads=5, rope_theta=100000.0,
    ),
    "smollm2-1.7b": dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
        num_attention_heads=32, num_key_value_heads=32, rope_theta=130000.0,
    ),
}  # fmt: skip
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                   "special_tokens_map.json", "generation_config.json")  # fmt: skip


def build(tokenizer_dir: str, shape: str, out: str, dtype: str = "bfloat16", seed: int = 0):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if shape not in SHAPES:
        raise SystemExit(f"unknown shape '{shape}' (known: {', '.join(SHAPES)})")
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    dims = dict(SHAPES[shape])
    config = LlamaConfig(
        vocab_size=len(tok),
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        head_dim=dims["hidden_size"] // dims["num_attention_heads"],
        rope_parameters={"rope_type": "default", "rope_theta": dims.pop("rope_theta")},
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        **dims,
    )
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (Path(tokenizer_dir) / name).is_file():
            shutil.copy(Path(tokenizer_dir) / name, Path(out) / name)
    n = sum(p.numel() for p in model.parameters())
    print(f"{shape}: {n / 1e6:.0f}M parameters, {dtype}, written to {out}")
    return n


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--shape", default="smollm2-1.7b", choices=sorted(SHAPES))
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="bfloat16")
    args = p.parse_args(argv)
    build(args.tokenizer, args.shape, args.out, args.dtype)


if __name__ == "__main__":
    main()
