"""Ranking metrics (docs/METHOD.md §9): pure functions of rankings, no I/O.

One relevant item per sample (the target), so NDCG is binary: 1/log2(rank+1) when the
target's 1-based rank is within k, else 0 (the ideal DCG is 1).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from inference.ranking import EvalSample, Ranking

# Sampled protocol: computed over the N candidates of one seed.
SAMPLED_METRICS = ("hr@1", "valid_ratio", "hr@5", "ndcg@5", "ndcg@10")
# Full protocol: the target's rank among all items the user had not seen before it.
FULL_METRICS = ("hr@10", "ndcg@10")


def rank_of(ranked_items: Sequence[str], target: str) -> int | None:
    """1-based rank of the target, or None when it is not in the list."""
    try:
        return list(ranked_items).index(target) + 1
    except ValueError:
        return None


def hit_at_k(ranked_items: Sequence[str], target: str, k: int) -> float:
    rank = rank_of(ranked_items[:k], target)
    return 1.0 if rank is not None else 0.0


def ndcg_at_k(ranked_items: Sequence[str], target: str, k: int) -> float:
    rank = rank_of(ranked_items[:k], target)
    return 1.0 / math.log2(rank + 1) if rank is not None else 0.0


def sample_metrics(sample: EvalSample, ranking: Ranking) -> dict[str, float]:
    """The sampled-protocol metrics of one ranked candidate list.

    HR@1 is the *answer*: an invalid answer is a miss even when the kept ranking puts
    the target first. The others judge the ranking itself, valid or not.
    """
    items, target = ranking.items, sample.target_item_id
    return {
        "hr@1": hit_at_k(items, target, 1) if ranking.answer_valid else 0.0,
        "valid_ratio": 1.0 if ranking.answer_valid else 0.0,
        "hr@5": hit_at_k(items, target, 5),
        "ndcg@5": ndcg_at_k(items, target, 5),
        "ndcg@10": ndcg_at_k(items, target, 10),
    }


def full_metrics(top_items: Sequence[str], target: str, k: int = 10) -> dict[str, float]:
    """Full-ranking HR@k / NDCG@k from a model's top-k over all eligible items."""
    return {f"hr@{k}": hit_at_k(top_items, target, k), f"ndcg@{k}": ndcg_at_k(top_items, target, k)}


def full_rank_of(scores: dict[str, float], target: str, exclude: Iterable[str] = ()) -> int:
    """1-based rank of the target among all scored items not excluded.

    Ties rank by item id, like every ranker here, so the rank is exact, not optimistic.
    """
    excluded = set(exclude) - {target}
    t_key = (-scores[target], target)
    return 1 + sum(1 for item, s in scores.items() if item not in excluded and (-s, item) < t_key)


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def aggregate(
    pairs: Iterable[tuple[EvalSample, Ranking]],
) -> dict[tuple[str, int | None], dict[str, float]]:
    """Mean metrics per (split, seed), and per (split, None): the mean over seeds.

    The seed mean is the mean of the per-seed means, so every seed weighs the same even
    if some seed evaluated fewer samples.
    """
    per_seed: dict[tuple[str, int], list[dict[str, float]]] = defaultdict(list)
    for sample, ranking in pairs:
        if sample.sample_id != ranking.sample_id or sample.seed != ranking.seed:
            raise ValueError(
                f"ranking {ranking.sample_id}/{ranking.seed} paired with sample "
                f"{sample.sample_id}/{sample.seed}"
            )
        per_seed[(sample.split, sample.seed)].append(sample_metrics(sample, ranking))
    out: dict[tuple[str, int | None], dict[str, float]] = {}
    for key in sorted(per_seed):
        rows = per_seed[key]
        out[key] = {m: _mean([r[m] for r in rows]) for m in SAMPLED_METRICS}
    for split in sorted({split for split, _ in per_seed}):
        seeds = [out[(sp, seed)] for sp, seed in per_seed if sp == split]
        out[(split, None)] = {m: _mean([s[m] for s in seeds]) for m in SAMPLED_METRICS}
    return out


def mean_metrics(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    """Per-key mean of metric dicts sharing the same keys (e.g. full-ranking rows)."""
    rows = list(rows)
    if not rows:
        return {}
    return {m: _mean([r[m] for r in rows]) for m in rows[0]}
