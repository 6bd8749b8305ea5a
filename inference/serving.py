"""Serving a LoRA adapter on CPU: merged into a cached copy of its base model, the
cache bounded by use."""

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


# A merged copy of SmolLM2-135M is 0.5 GB, and every training run makes a new version:
# without a bound, nightly training fills the disk within months.
KEEP = 4  # merged models kept besides the one in use ($R2REC_MERGED_KEEP)
IDLE_S = 24 * 3600  # never evict a model used this recently: a job may be loading it
USED = ".last_used"


def _last_used(entry: Path) -> float:
    try:
        marker = entry / USED
        return (marker if marker.exists() else entry).stat().st_mtime
    except OSError:  # evicted by another process meanwhile: nothing left to decide
        return float("inf")


def prune_merged(root: Path, keep: int, idle_s: float = IDLE_S, now: float | None = None):
    """Delete merged models beyond the ``keep`` most recently used, and merges that died
    half-written, except any touched in the last ``idle_s`` seconds; returns their names.

    An entry is renamed away before it is deleted, so a job that resolves it afterwards
    builds it again rather than reading a half-deleted model.
    """
    import shutil
    import time

    now = time.time() if now is None else now
    if not root.is_dir():
        return []
    entries = sorted(
        (e for e in root.iterdir() if e.is_dir()), key=_last_used, reverse=True
    )  # fmt: skip
    done = [e for e in entries if not e.name.startswith(".")]
    stale = done[keep:] + [e for e in entries if e.name.startswith(".merging-")]
    evicted = []
    for entry in stale:
        if now - _last_used(entry) < idle_s:
            continue
        doomed = root / f".evicting-{entry.name}"
        try:
            entry.rename(doomed)
        except OSError:  # another process evicted it first
            continue
        shutil.rmtree(doomed, ignore_errors=True)
        evicted.append(entry.name)
    return evicted


def merged_model_dir(model: ResolvedModel) -> str:
    """A directory with the adapter merged into the base weights, built once per version.

    Kept under ``$R2REC_CACHE/merged/<version>``; written to a temporary sibling and
    renamed, so concurrent shard tasks never read a half-written model. Each use marks
    the entry; the cache keeps the ``$R2REC_MERGED_KEEP`` (4) most recently used others
    and evicts older ones not used for a day.
    """
    import os
    import shutil
    import tempfile

    from r2rec.assets import cache_dir

    if not model.adapter:
        return model.path
    out = cache_dir() / "merged" / model.version
    keep = int(os.environ.get("R2REC_MERGED_KEEP", KEEP))
    if (out / "config.json").is_file():
        (out / USED).touch()
        prune_merged(out.parent, keep + 1)
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
    (out / USED).touch()
    prune_merged(out.parent, keep + 1)
    return str(out)
