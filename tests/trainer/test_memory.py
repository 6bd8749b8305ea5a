"""The trainers' memory hygiene: freed heap pages go back after a step over a bound, and the
resident memory each progress line reports is this process's, now."""

from __future__ import annotations

import gc
import os
import sys

import pytest

from r2rec.errors import R2RecError
from trainer.common import _glibc_trim, release_memory_callback, resident_mb, trim_above_mb


def test_a_step_end_trims_only_a_process_over_the_bound():
    calls = []
    held = iter([7000.0, 9000.0, 8000.1, None, 8000.0])
    callback = release_memory_callback(trim=calls.append, above_mb=8000, rss=lambda: next(held))
    for _ in range(5):
        callback.on_step_end(None, None, None)
    # malloc_trim(0) after the 2nd and 3rd steps only: under the bound (or unknown, off
    # Linux) the pages stay, since the next step would fault them all in again.
    assert calls == [0, 0]


def test_the_bound_is_a_share_of_memory_or_the_setting(monkeypatch):
    monkeypatch.delenv("R2REC_TRIM_ABOVE_MB", raising=False)
    phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    assert trim_above_mb() == pytest.approx(0.3 * phys)
    monkeypatch.setenv("R2REC_TRIM_ABOVE_MB", "0")  # every step, as before
    assert trim_above_mb() == 0.0
    for bad in ("-1", "lots", "nan"):
        monkeypatch.setenv("R2REC_TRIM_ABOVE_MB", bad)
        with pytest.raises(R2RecError, match="R2REC_TRIM_ABOVE_MB must be MiB >= 0"):
            release_memory_callback(trim=print)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and glibc")
def test_resident_memory_is_reported_and_trim_returns_a_fragmented_heap():
    before = resident_mb()
    # Small blocks come from the heap (not mmap); keeping every 50th one alive pins the
    # heap's top, so freeing the rest leaves free pages that only a trim hands back: the
    # pattern of a GRPO step's tensors of ever new shapes.
    blocks = [bytes(bytearray(2000)) for _ in range(150_000)]
    grown = resident_mb()
    assert grown - before >= 200, (before, grown)
    keep = blocks[::50]
    del blocks
    gc.collect()
    freed = resident_mb()
    trim = _glibc_trim()
    assert trim is not None  # glibc here: the callback is not a no-op on our machines
    trim(0)
    trimmed = resident_mb()
    assert freed - trimmed >= 150, (grown, freed, trimmed)
    assert len(keep) == 3000
