"""Which model a job uses, and the version string it is recorded under.

A version names the weights, not the path: ``<name>@<12 hex of a content hash>``, plus
``+<adapter>@<hash>`` for a LoRA adapter, so rows written by two different models never
share a version even when the files lived at the same path. Training registers models
by it and scoring and evaluation record it, so it lives in the core.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from r2rec.errors import R2RecError


@dataclass(frozen=True)
class ResolvedModel:
    path: str
    version: str
    adapter: str | None = None
    adapter_rank: int | None = None


def file_digest(path: Path) -> str:
    """SHA-256 of a whole file, cached beside the cache dir by (path, size, mtime).

    Every byte counts (a retrain that changed only late tensors is a new version); the
    cache keeps an 8B model from being re-read on every run.
    """
    import json as _json
    import os

    from r2rec.assets import cache_dir, sha256

    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    entry = cache_dir() / "digests" / f"{key.hexdigest()[:32]}.json"
    if entry.is_file():
        return _json.loads(entry.read_text())["sha256"]
    digest = sha256(path)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}")
    tmp.write_text(_json.dumps({"path": str(path), "sha256": digest}))
    os.replace(tmp, entry)
    return digest


def _adapter_config_digest(path: Path) -> str:
    """SHA-256 of a LoRA config as data, not bytes: peft writes ``target_modules`` from a
    set, whose order changes from process to process (string hashes are salted). An
    adapter saved unchanged by a second run (a GRPO run that learned nothing) differed
    from its parent only there, so equal weights got two versions, or one, by chance."""
    config = json.loads(path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _fingerprint(directory: Path, patterns: tuple[str, ...]) -> str:
    """Hash of the config and weight files' names and whole contents."""
    h = hashlib.sha256()
    files = sorted({f for p in patterns for f in directory.glob(p) if f.is_file()})
    if not files:
        raise R2RecError(f"{directory} holds no model files ({', '.join(patterns)})")
    for f in files:
        h.update(f.name.encode())
        digest = _adapter_config_digest(f) if f.name == "adapter_config.json" else None
        h.update((digest or file_digest(f)).encode())
    return h.hexdigest()[:12]


def resolve_model(
    spec: str | None, adapter: str | None = None, registered: str | None = None
) -> ResolvedModel:
    """``None`` or the default's name = the bundled SmolLM2; otherwise a model directory.

    ``registered``: the version a registry row recorded for these files. A registered
    model keeps it (and its files are not hashed again), so its metrics and served rows
    join its registry row and promotion even after the fingerprint's algorithm changes,
    as it did once (head-only to whole-file).
    """
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
        elif registered:
            version = registered
        else:
            weights = ("config.json", "*.safetensors", "*.bin")
            version = f"{path.name}@{_fingerprint(path, weights)}"
    if not adapter:
        return ResolvedModel(str(path), registered or version)
    apath = Path(adapter).expanduser()
    config = apath / "adapter_config.json"
    if not config.is_file():
        raise R2RecError(f"adapter '{adapter}' has no adapter_config.json")
    rank = int(json.loads(config.read_text()).get("r", 16))
    if registered:
        return ResolvedModel(str(path), registered, str(apath), rank)
    fingerprint = _fingerprint(apath, ("adapter_config.json", "adapter_model.*"))
    return ResolvedModel(str(path), f"{version}+{apath.name}@{fingerprint}", str(apath), rank)
