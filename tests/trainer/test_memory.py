"""The trainers' memory hygiene: freed heap pages go back after each step, and the
resident memory each progress line reports is this process's, now."""

from __future__ import annotations

import gc
import sys

import pytest

from trainer.common import _glibc_trim, release_memory_callback, resident_mb


def test_each_step_end_collects_and_trims_once():
    calls = []
    callback = release_memory_callback(trim=calls.append)
    for _ in range(3):
        callback.on_step_end(None, None, None)
    assert calls == [0, 0, 0]  # malloc_trim(0): release everything free above the heap top


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
