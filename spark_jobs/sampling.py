"""Seeded randomness shared by the Spark jobs and the plain-Python reference.

Every random choice in the pipeline is a pure function of (seed, names, run date), so a
rerun or a backfill reproduces its partition exactly, on any number of executors.
Definitions: docs/METHOD.md §10.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from r2rec.seeding import stable_hash

NEGATIVE_SAMPLERS = ("uniform", "popularity")


def fanout_order(seed: int, owner: str, members: Sequence[str]) -> list[str]:
    """``members`` in the seeded order used to keep only the first F of them."""
    return sorted(members, key=lambda m: (stable_hash(seed, owner, m), m))


class CandidateSampler:
    """Draws a sample's candidate list: its target plus n-1 negatives the user never saw.

    Built once per executor partition (the vocabulary is shared by every sample);
    ``degrees`` switches from uniform to popularity-weighted draws (∝ degree^alpha).
    """

    def __init__(
        self,
        vocabulary: Sequence[str],
        *,
        seed: int,
        ds: str,
        n: int = 20,
        degrees: Sequence[int] | None = None,
        alpha: float = 1.0,
    ):
        self.vocabulary = list(vocabulary)
        self.vocab_set = frozenset(self.vocabulary)
        self.seed, self.ds, self.n = seed, ds, n
        self.probabilities = None
        if degrees is not None:
            w = np.asarray(degrees, dtype=np.float64) ** alpha
            self.probabilities = w / w.sum()

    def unseen(self, positives: set[str]) -> int:
        """How many vocabulary items the user has not interacted with."""
        return len(self.vocabulary) - len(self.vocab_set & positives)

    def draw(
        self,
        user_id: str,
        sample_id: str,
        target: str,
        positives: set[str],
        unseen: int | None = None,
    ) -> list[str] | None:
        """Shuffled candidates, or None when the user has fewer than n-1 unseen items.

        ``unseen`` (from :meth:`unseen`) saves recounting for each of a user's samples.
        """
        need = self.n - 1
        if target not in positives:  # the target is never its own negative
            positives = positives | {target}
            unseen = None
        if (self.unseen(positives) if unseen is None else unseen) < need:
            return None
        rng = np.random.default_rng(stable_hash(self.seed, user_id, sample_id, self.ds))
        size = len(self.vocabulary)
        chosen: list[str] = []
        taken: set[str] = set()
        while len(chosen) < need:
            if self.probabilities is None:
                draws = rng.integers(0, size, 4 * need)
            else:
                draws = rng.choice(size, size=4 * need, p=self.probabilities)
            for idx in draws:
                item = self.vocabulary[int(idx)]
                if item in positives or item in taken:
                    continue
                taken.add(item)
                chosen.append(item)
                if len(chosen) == need:
                    break
        items = [target, *chosen]
        return [items[int(k)] for k in rng.permutation(len(items))]
