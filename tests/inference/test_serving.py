"""The merged-model cache: a hit is marked used, and the cache stays bounded."""

from __future__ import annotations

import os
import time

from inference import serving
from r2rec.models import ResolvedModel

DAY = 24 * 3600


def entry(root, name: str, used: float | None, merged: bool = True):
    path = root / name
    path.mkdir(parents=True)
    if merged:
        (path / "config.json").write_text("{}")
    if used is not None:
        (path / serving.USED).touch()
        os.utime(path / serving.USED, (used, used))
    return path


def test_prune_keeps_the_most_recently_used_and_anything_used_today(tmp_path):
    now = time.time()
    for k in range(5):  # v0 used 5 days ago ... v4 used 1 day ago
        entry(tmp_path, f"v{k}", now - (5 - k) * DAY - 60)
    entry(tmp_path, "fresh", now - 3600)  # beyond keep, but used an hour ago
    entry(tmp_path, ".merging-abc", None, merged=False)  # a merge that died
    os.utime(tmp_path / ".merging-abc", (now - 2 * DAY, now - 2 * DAY))
    entry(tmp_path, ".merging-now", None, merged=False)  # one in progress
    evicted = serving.prune_merged(tmp_path, keep=2, now=now)
    # kept: the two most recently used (fresh, v4) and the merge in progress
    assert sorted(evicted) == [".merging-abc", "v0", "v1", "v2", "v3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".merging-now", "fresh", "v4"]
    # with nothing to keep, what was used within a day still stays: a job may be loading it
    assert serving.prune_merged(tmp_path, keep=0, now=now) == ["v4"]
    assert serving.prune_merged(tmp_path / "absent", keep=0) == []


def test_a_cache_hit_is_marked_and_prunes_the_others(tmp_path, monkeypatch):
    monkeypatch.setenv("R2REC_CACHE", str(tmp_path))
    monkeypatch.setenv("R2REC_MERGED_KEEP", "1")
    merged = tmp_path / "merged"
    old = time.time() - 3 * DAY
    for name in ("a", "b", "c"):
        entry(merged, name, old)
    hit = entry(merged, "base@1+adapter@2", old)
    path = serving.merged_model_dir(ResolvedModel("/base", "base@1+adapter@2", adapter="/adapter"))
    assert path == str(hit)
    assert time.time() - (hit / serving.USED).stat().st_mtime < 60  # marked used now
    # the one in use and one other stay (keep 1 besides it)
    assert len(list(merged.iterdir())) == 2 and hit.is_dir()
