"""Which model a scoring or evaluation run uses, and the version string it is recorded under.

A version names the weights, not the path: ``<name>@<12 hex of a content hash>``, plus
``+<adapter>@<hash>`` for a LoRA adapter, so rows written by two different models never
share a version even when the files lived at the same path.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from r2rec.errors import R2RecError

_HEAD = 4 << 20  # bytes of each weight file that enter the fingerprint


@dataclass(frozen=True)
class ResolvedModel:
    path: str
    version: str
    adapter: str | None = None
    adapter_rank: int | None = None


def _fingerprint(directory: Path, patterns: tuple[str, ...]) -> str:
    """Hash of the config and weight files' names, sizes and first 4 MiB.

    Hashing every byte of an 8B model would cost half a minute per run; any retrain
    changes the sizes or the first tensors' bytes.
    """
    h = hashlib.sha256()
    files = sorted({f for p in patterns for f in directory.glob(p) if f.is_file()})
    if not files:
        raise R2RecError(f"{directory} holds no model files ({', '.join(patterns)})")
    for f in files:
        h.update(f.name.encode())
        h.update(str(f.stat().st_size).encode())
        with open(f, "rb") as fh:
            h.update(fh.read(_HEAD))
    return h.hexdigest()[:12]


def resolve_model(spec: str | None, adapter: str | None = None) -> ResolvedModel:
    """``None`` or the default's name = the bundled SmolLM2; otherwise a model directory."""
    from r2rec.assets import DEFAULT_MODEL, default_model_dir

    if spec in (None, "", DEFAULT_MODEL):
        path = default_model_dir()
        manifest = json.loads((path / "r2rec_conversion.json").read_text())
        version = f"{DEFAULT_MODEL}@{manifest['gguf_sha256'][:12]}"
    else:
        path = Path(spec).expanduser()
        if not (path / "config.json").is_file():
            raise R2RecError(
                f"model '{spec}' is neither '{DEFAULT_MODEL}' nor a model directory "
                "with a config.json"
            )
        conversion = path / "r2rec_conversion.json"
        if conversion.is_file():
            # The converted default named by its directory (as the registry stores it)
            # keeps the default's version, so base and adapter versions line up.
            manifest = json.loads(conversion.read_text())
            version = f"{manifest['model']}@{manifest['gguf_sha256'][:12]}"
        else:
            weights = ("config.json", "*.safetensors", "*.bin")
            version = f"{path.name}@{_fingerprint(path, weights)}"
    if not adapter:
        return ResolvedModel(str(path), version)
    apath = Path(adapter).expanduser()
    config = apath / "adapter_config.json"
    if not config.is_file():
        raise R2RecError(f"adapter '{adapter}' has no adapter_config.json")
    rank = int(json.loads(config.read_text()).get("r", 16))
    fingerprint = _fingerprint(apath, ("adapter_config.json", "adapter_model.*"))
    return ResolvedModel(str(path), f"{version}+{apath.name}@{fingerprint}", str(apath), rank)


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
