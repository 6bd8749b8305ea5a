"""Model versions name the weights: content hashes, and the default keeps one name."""

from __future__ import annotations

import json

import pytest

from r2rec.errors import R2RecError
from r2rec.models import resolve_model


def model_dir(path, weights: bytes = b"w" * 100):
    path.mkdir()
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_directory_versions_follow_the_weights(tmp_path):
    a = resolve_model(str(model_dir(tmp_path / "m1")))
    b = resolve_model(str(model_dir(tmp_path / "m2", b"x" * 100)))
    assert a.version.startswith("m1@") and len(a.version) == len("m1@") + 12
    assert a.version.split("@")[1] != b.version.split("@")[1]
    with pytest.raises(R2RecError, match="neither"):
        resolve_model(str(tmp_path / "nothing"))


def test_the_converted_default_keeps_its_version_when_named_by_directory(tmp_path):
    path = model_dir(tmp_path / "smollm2-135m-instruct")
    (path / "r2rec_conversion.json").write_text(
        json.dumps({"model": "smollm2-135m-instruct", "gguf_sha256": "ab" * 32})
    )
    assert resolve_model(str(path)).version == "smollm2-135m-instruct@abababababab"


def test_an_adapter_extends_the_version(tmp_path):
    base = model_dir(tmp_path / "base")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (adapter / "adapter_model.safetensors").write_bytes(b"a" * 10)
    resolved = resolve_model(str(base), str(adapter))
    assert resolved.version.startswith(resolve_model(str(base)).version + "+adapter@")
    assert (resolved.adapter, resolved.adapter_rank) == (str(adapter), 8)
    with pytest.raises(R2RecError, match=r"no adapter_config\.json"):
        resolve_model(str(base), str(tmp_path))


def test_an_adapter_saved_twice_unchanged_keeps_its_version(tmp_path):
    """peft writes target_modules in set order, which differs between processes: the
    same weights saved by two runs must still name one version."""
    base = model_dir(tmp_path / "base")
    versions = set()
    for i, modules in enumerate((["q_proj", "v_proj", "o_proj"], ["o_proj", "q_proj", "v_proj"])):
        adapter = tmp_path / f"run{i}" / "adapter"
        adapter.mkdir(parents=True)
        config = json.dumps({"target_modules": modules, "r": 8}, indent=2 + i)
        (adapter / "adapter_config.json").write_text(config)
        (adapter / "adapter_model.safetensors").write_bytes(b"a" * 10)
        versions.add(resolve_model(str(base), str(adapter)).version)
    assert len(versions) == 1
    # What the config says still counts: another module set or rank is another version.
    for change in ({"target_modules": ["q_proj", "v_proj"], "r": 8}, {"target_modules":
                   ["q_proj", "v_proj", "o_proj"], "r": 16}):  # fmt: skip
        (adapter / "adapter_config.json").write_text(json.dumps(change))
        versions.add(resolve_model(str(base), str(adapter)).version)
    assert len(versions) == 3


def test_a_registered_model_keeps_its_registry_version_and_is_not_hashed_again(
    tmp_path, monkeypatch
):
    import r2rec.models as models

    base = model_dir(tmp_path / "base")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 4}))
    (adapter / "adapter_model.safetensors").write_bytes(b"a" * 10)
    fresh = resolve_model(str(base), str(adapter)).version
    # A model registered by older code carries a version today's hash would not produce:
    # the registry's version must win, or its metrics no longer join its registry row.
    old = "base@000000000000+adapter@111111111111"
    monkeypatch.setattr(models, "file_digest", lambda _: pytest.fail("hashed again"))
    got = resolve_model(str(base), str(adapter), registered=old)
    assert (got.version, got.adapter, got.adapter_rank) == (old, str(adapter), 4)
    assert got.version != fresh
    # A fully fine-tuned registered model (no adapter) keeps its version too.
    assert resolve_model(str(base), registered="base@222222222222").version == "base@222222222222"
    # The files must still be there: a registry row does not stand in for missing weights.
    with pytest.raises(R2RecError, match=r"no adapter_config\.json"):
        resolve_model(str(base), str(tmp_path / "gone"), registered=old)


def test_every_byte_of_the_weights_counts_and_the_digest_is_cached_by_size_and_mtime(
    tmp_path, monkeypatch
):
    """Issue 16 item 12: the version once hashed only the first 4 MiB of each file, so a
    retrain that changed only later tensors kept its old name."""
    import os

    import r2rec.assets as assets

    monkeypatch.setenv("R2REC_CACHE", str(tmp_path / "cache"))
    head = b"w" * (5 * 2**20)
    a = resolve_model(str(model_dir(tmp_path / "a", head + b"1"))).version.split("@")[1]
    b = resolve_model(str(model_dir(tmp_path / "b", head + b"2"))).version.split("@")[1]
    assert a != b  # the files differ in their last byte only, past 5 MiB

    hashed: list[str] = []
    real = assets.sha256
    monkeypatch.setattr(assets, "sha256", lambda path: hashed.append(path.name) or real(path))
    weights = tmp_path / "a" / "model.safetensors"
    assert resolve_model(str(tmp_path / "a")).version.split("@")[1] == a
    assert hashed == []  # same size and mtime: the cached digest, no second read
    stat = weights.stat()
    weights.write_bytes(head + b"2")  # rewritten in place, same size
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert resolve_model(str(tmp_path / "a")).version.split("@")[1] == b
    assert "model.safetensors" in hashed
