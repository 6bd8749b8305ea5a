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
# The LLM's reasoning, judged against its prompt (r2rec.prompt.reasoning_checks).
REASONING_METRICS = ("reasoning.names_top", "reasoning.grounded", "reasoning.no_repeat")
Z95 = 1.959963984540054


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
    out = {
        "hr@1": hit_at_k(items, target, 1) if ranking.answer_valid else 0.0,
        "valid_ratio": 1.0 if ranking.answer_valid else 0.0,
        "hr@5": hit_at_k(items, target, 5),
        "ndcg@5": ndcg_at_k(items, target, 5),
        "ndcg@10": ndcg_at_k(items, target, 10),
    }
    if ranking.checks:
        out.update({f"reasoning.{k}": float(v) for k, v in ranking.checks.items()})
    return out


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
        out[key] = {m: _mean([r[m] for r in rows]) for m in rows[0]}
    for split in sorted({split for split, _ in per_seed}):
        seeds = [out[(sp, seed)] for sp, seed in per_seed if sp == split]
        out[(split, None)] = {m: _mean([s[m] for s in seeds]) for m in seeds[0]}
    return out


def per_sample(
    pairs: Iterable[tuple[EvalSample, Ranking]],
) -> dict[str, dict[str, dict[str, float]]]:
    """split -> sample_id -> metric averaged over the sample's seeds.

    The unit of an interval: the seeds of one sample are not independent draws of the
    model's quality, the samples are.
    """
    acc: dict[str, dict[str, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    for sample, ranking in pairs:
        acc[sample.split][sample.sample_id].append(sample_metrics(sample, ranking))
    return {
        split: {sid: {m: _mean([r[m] for r in rows]) for m in rows[0]} for sid, rows in by.items()}
        for split, by in acc.items()
    }


def interval(values: Sequence[float]) -> tuple[float, float]:
    """95% normal interval of a mean (one value per sample); a point for fewer than 2."""
    n = len(values)
    mean = _mean(values)
    if n < 2:
        return mean, mean
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = Z95 * math.sqrt(var / n)
    return mean - half, mean + half


def proportion_interval(hits: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion hits/n: a hit rate (one 0/1 per user or
    sample). Unlike the normal interval it stays inside [0, 1] and is not a point at 0 or
    1 hits, which is where a 15-user backtest date or a weak model's HR@1 sits."""
    if n < 1:
        raise ValueError("a proportion needs n >= 1")
    if not 0 <= hits <= n:
        raise ValueError(f"hits {hits} is not within 0..{n}")
    p, z2 = hits / n, Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # Exact at the ends: rounding must not leave 0 hits an interval above 0.
    return (0.0 if hits == 0 else centre - half), (1.0 if hits == n else centre + half)


def paired_difference(
    a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], metric: str
) -> tuple[float, float, float, int] | None:
    """Mean of a - b over the samples both ranked, with its 95% interval (paired)."""
    common = sorted(set(a) & set(b))
    if not common:
        return None
    diffs = [a[s][metric] - b[s][metric] for s in common]
    low, high = interval(diffs)
    return _mean(diffs), low, high, len(common)


def mean_metrics(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    """Per-key mean of metric dicts sharing the same keys (e.g. full-ranking rows)."""
    rows = list(rows)
    if not rows:
        return {}
    return {m: _mean([r[m] for r in rows]) for m in rows[0]}
