"""What every ranker (the LLM scorer and the classical baselines) takes and returns.

Evaluation treats all models alike: each gets the same protocol samples (history and
the N labelled candidates of one seed) and returns the candidates in ranked order,
plus whether its answer was valid. Only the LLM can answer invalidly; a baseline's
first item is always its answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class EvalSample:
    sample_id: str
    split: str  # valid | test
    seed: int
    user_id: str
    history: tuple[str, ...]  # item ids, oldest first (the last L before the target)
    candidates: tuple[str, ...]  # item ids in display order
    labels: tuple[str, ...]  # C1..CN aligned with candidates
    target_item_id: str
    target_ts: datetime | None = None  # what "before the target" means for an as-of ranker


@dataclass
class Ranking:
    sample_id: str
    seed: int
    items: list[str]  # every candidate exactly once, best first
    answer_valid: bool = True
    scores: list[float] = field(default_factory=list)  # aligned with items, if any
    # The LLM's reasoning, judged against its prompt (names_top, grounded, no_repeat).
    checks: dict[str, bool] = field(default_factory=dict)


class Ranker(Protocol):
    name: str

    def rank(self, samples: Sequence[EvalSample]) -> list[Ranking]: ...
