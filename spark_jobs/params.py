"""Typed parameters of the graph, samples, candidates and chains definitions.

Shared by the Spark jobs and the plain-Python reference (docs/METHOD.md §10), so both
are configured by the same objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from r2rec.errors import R2RecError
from r2rec.prompt import SHAPE
from spark_jobs.sampling import NEGATIVE_SAMPLERS


@dataclass(frozen=True)
class SampleParams:
    history_len: int = SHAPE.history_len  # L: items of history shown per sample
    min_history: int = 1  # positions with fewer previous items give no sample
    max_train: int = 20  # M: most recent training positions kept per user; 0 = all

    def __post_init__(self) -> None:
        if self.history_len < 1 or self.min_history < 1 or self.max_train < 0:
            raise R2RecError("need history_len >= 1, min_history >= 1, max_train >= 0")


@dataclass(frozen=True)
class CandidateParams:
    n: int = SHAPE.candidates  # per sample: the target plus n-1 negatives
    seeds: tuple[int, ...] = (0, 1, 2)  # valid/test get every seed; train the first
    sampler: str = "uniform"  # uniform | popularity
    alpha: float = 1.0  # popularity exponent

    def __post_init__(self) -> None:
        if self.n < 2 or not self.seeds:
            raise R2RecError("need n >= 2 and at least one seed")
        if self.sampler not in NEGATIVE_SAMPLERS:
            raise R2RecError(f"sampler must be one of {NEGATIVE_SAMPLERS}")


@dataclass(frozen=True)
class ChainParams:
    top_k: int = 3  # K chains kept per sample
    fanout: int = 50  # F users per item and items per user while expanding; 0 = no cap
    seed: int = 0
    recency_weight: float = 0.1
    min_overlap: int = 2  # closure: shared items between u0 and u1
    # Evidence score (docs/METHOD.md §8a): a history item's cosine term is multiplied by
    # this for every history item after it; 1 weighs the whole history alike (score v3).
    history_decay: float = 0.7
    # ... and by 1 + proximity x exp((1 - g) / proximity_scale) for a similar user who
    # chose the history item and the candidate g places apart in its sequence (score v5);
    # proximity 0 leaves every place alike (v4).
    proximity: float = 10.0
    proximity_scale: float = 10.0

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.fanout < 0 or self.min_overlap < 1:
            raise R2RecError("need top_k >= 1, fanout >= 0, min_overlap >= 1")
        if not 0 < self.history_decay <= 1:
            raise R2RecError(f"need 0 < history_decay <= 1, got {self.history_decay}")
        if not (
            math.isfinite(self.proximity)
            and math.isfinite(self.proximity_scale)
            and self.proximity >= 0
            and self.proximity_scale > 0
        ):
            raise R2RecError(
                "need a finite proximity >= 0 and proximity_scale > 0, got "
                f"{self.proximity}, {self.proximity_scale}"
            )
