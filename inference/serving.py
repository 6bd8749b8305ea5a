"""Serving a LoRA adapter on CPU: merged into a cached copy of its base model."""

from __future__ import annotations

from pathlib import Path

from r2rec.models import ResolvedModel


def merge_lora_by_default() -> bool:
    """Serve adapters merged on CPU, as LoRA on GPUs ($R2REC_MERGE_LORA=1/0 decides).

    vLLM's CPU LoRA path applies the adapter in separate kernels on every layer; merged
    weights cost nothing extra per token. On GPUs LoRA serving is cheap and lets one
    engine hold several adapters.
    """
    import os

    choice = os.environ.get("R2REC_MERGE_LORA", "").strip()
    if choice in ("0", "1"):
        return choice == "1"
    import torch

    return not torch.cuda.is_available()


def merged_model_dir(model: ResolvedModel) -> str:
    """A directory with the adapter merged into the base weights, built once per version.

    Kept under ``$R2REC_CACHE/merged/<version>``; written to a temporary sibling and
    renamed, so concurrent shard tasks never read a half-written model.
    """
    import os
    import shutil
    import tempfile

    from r2rec.assets import cache_dir

    if not model.adapter:
        return model.path
    out = cache_dir() / "merged" / model.version
    if (out / "config.json").is_file():
        return str(out)
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".merging-", dir=out.parent))
    try:
        base = AutoModelForCausalLM.from_pretrained(model.path, dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, model.adapter).merge_and_unload()
        merged.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(model.path).save_pretrained(tmp)
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / "config.json").is_file():  # not a concurrent writer's result
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)
