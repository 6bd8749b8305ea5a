"""Stable hashing for seeded choices, shared by every stage.

Python's ``hash()`` is salted per process; this is not, so a choice seeded by names and
a run date is the same on every executor, in every rerun and in every backfill.
"""

from __future__ import annotations

import hashlib


def stable_hash(*parts: object) -> int:
    """64-bit hash of the parts joined by '|'."""
    text = "|".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
