"""Benchmark: does what the prompt shows hold more than the evidence order? A learned ranker.

    python -m bench.evidence_learned --lakehouse DIR --ds D [--max-samples N] [--content]
        [--record bench/RESULTS.md]

For each candidate the prompt shows (docs/METHOD.md §8a): whether a chain reaches it, its
place in the evidence order, how many similar users reach it, their mean overlap with the
user, and which history items they pass through (so how recent the nearest one is). An
LLM trained on these prompts can beat the evidence ranker (the order itself) only by
reading more out of them, or out of the item text.

This fits the best a learner can do with those numbers alone: a conditional logit (a
softmax over one list's candidates, linear in the features above plus the evidence score
and the candidate's audience before the target, which popularity knows) on every
training list of D, by maximum likelihood. It then ranks D's valid/test lists and pairs
them with the evidence ranker (``inference.prompts.EvidenceRanker``) on the same samples,
as ``bench.evidence_score`` does: HR@1 per split with 95% intervals over samples, and the
paired difference. A learned ranker no better than the order says that the numbers hold
nothing more to find, so what an LLM adds must come from the text.

``--content`` adds what the item text holds and the prompt leaves out (it shows short
titles, ``r2rec.catalog.ItemText.short``): how much of the history shares the
candidate's genres, the candidate's age at the target, and its year against the newest
history item's. What that adds is what a prompt showing genres and years could give.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bench import record_section
from bench.evidence_score import paired_rows, table

FEATURES = (
    "has evidence",
    "score",
    "score / the list's best",
    "1 / place in the evidence order",
    "first in the evidence order",
    "log(1 + similar users)",
    "mean overlap",
    "1 / distance of the nearest via item from the history's end",
    "log(1 + audience before the target)",
)
CONTENT = (
    "history share of the candidate's genres",
    "age at the target (years)",
    "year - the newest history item's",
)
NAME = "learned"


def features(sample, rows: dict, audience) -> np.ndarray:
    """One row per candidate of a list (``FEATURES``), from its evidence ``rows`` (item ->
    evidence row, as the prompt has them) and ``audience(item, ts)``."""
    ranked = sorted(
        (i for i in sample.candidates if i in rows),
        key=lambda i: (-rows[i]["score"], -rows[i]["users"], sample.candidates.index(i)),
    )
    place = {item: k for k, item in enumerate(ranked)}
    best = max((rows[i]["score"] for i in ranked), default=0.0) or 1.0
    end = {item: len(sample.history) - k for k, item in enumerate(sample.history)}
    out = np.zeros((len(sample.candidates), len(FEATURES)))
    for k, item in enumerate(sample.candidates):
        out[k, 8] = np.log1p(audience(item, sample.target_ts))
        r = rows.get(item)
        if r is None:
            continue
        nearest = min((end[v] for v in r["via"] if v in end), default=None)
        out[k, :8] = (
            1.0,
            r["score"],
            r["score"] / best,
            1.0 / (1 + place[item]),
            float(place[item] == 0),
            np.log1p(r["users"]),
            r["overlap"],
            1.0 / nearest if nearest else 0.0,
        )
    return out


def content_features(sample, items: dict) -> np.ndarray:
    """``CONTENT`` per candidate, from the catalogue as of D (``items_as_of``); an item
    without a year gets the history's newest (or the target's year)."""
    from r2rec.catalog import item_text

    history = [item_text(items, h) for h in sample.history]
    counts: dict[str, int] = {}
    for h in history:
        for genre in h.genres:
            counts[genre] = counts.get(genre, 0) + 1
    newest = max((h.year for h in history if h.year), default=sample.target_ts.year)
    out = np.zeros((len(sample.candidates), len(CONTENT)))
    for k, item in enumerate(sample.candidates):
        c = item_text(items, item)
        year = c.year or newest
        shared = sum(counts.get(g, 0) for g in c.genres)
        share = shared / (len(history) * len(c.genres)) if history and c.genres else 0.0
        out[k] = (share, max(sample.target_ts.year - year, 0), year - newest)
    return out


class ConditionalLogit:
    """P(candidate k of a list) ∝ exp(w · x_k), features standardised over the training
    candidates, fitted by Newton steps with a backtracking line search (a convex
    problem: few features, so the Hessian is cheap) and a small L2 penalty."""

    def __init__(self, l2: float = 1e-4, iterations: int = 50):
        self.l2, self.iterations = l2, iterations

    def _nll(self, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
        z = x @ w
        top = z.max(axis=1)
        log_z = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
        return float((log_z - z[np.arange(len(y)), y]).mean() + self.l2 * w @ w)

    def fit(self, x: np.ndarray, y: np.ndarray) -> ConditionalLogit:
        """``x``: (lists, candidates, features); ``y``: the target's index in each list."""
        flat = x.reshape(-1, x.shape[-1])
        self.mean, self.scale = flat.mean(axis=0), flat.std(axis=0)
        self.scale[self.scale == 0] = 1.0  # a constant feature: weight stays 0
        x = (x - self.mean) / self.scale
        n, w = len(y), np.zeros(x.shape[-1])
        for _ in range(self.iterations):
            z = x @ w
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            expected = np.einsum("nk,nkf->nf", p, x)
            grad = (expected - x[np.arange(n), y]).mean(axis=0) + 2 * self.l2 * w
            hess = (np.einsum("nk,nkf,nkg->fg", p, x, x) - expected.T @ expected) / n
            step = np.linalg.solve(hess + 2 * self.l2 * np.eye(len(w)), grad)
            before, t = self._nll(x, y, w), 1.0
            while self._nll(x, y, w - t * step) > before - 1e-4 * t * (grad @ step) and t > 1e-8:
                t /= 2
            w = w - t * step
            if np.abs(grad).max() < 1e-9:
                break
        self.weights, self.gradient = w, float(np.abs(grad).max())
        return self

    def scores(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.weights


def training_lists(lakehouse, ds: str) -> list:
    """D's training (sample, seed) lists, in the evaluation's shape."""
    import pyarrow.compute as pc

    from inference.ranking import EvalSample
    from r2rec.contracts import CANDIDATES, SAMPLES

    on_ds = [("ds", "=", ds)]
    train = pc.field("split") == "train"
    samples = {
        r["sample_id"]: r
        for r in lakehouse.read_arrow(SAMPLES, partitions=on_ds).filter(train).to_pylist()
    }
    out = []
    for row in lakehouse.read_arrow(CANDIDATES, partitions=on_ds).filter(train).to_pylist():
        s = samples[row["sample_id"]]
        out.append(EvalSample(row["sample_id"], "train", row["seed"], row["user_id"],
                              tuple(s["history"]), tuple(row["items"]), tuple(row["labels"]),
                              row["target_item_id"], s["target_ts"]))  # fmt: skip
    return out


def audiences(edges):
    """``audience(item, ts)``: the item's users before ts (edges: item_id, ts columns)."""
    times = {
        item: np.sort(group.to_numpy(dtype="datetime64[us]"))
        for item, group in edges.groupby("item_id")["ts"]
    }

    def audience(item: str, ts) -> int:
        t = times.get(item)
        when = np.datetime64(ts.replace(tzinfo=None), "us")
        return 0 if t is None else int(np.searchsorted(t, when))

    return audience


def compare(
    lakehouse, ds: str, max_samples: int, content: bool = False
) -> tuple[list[dict], ConditionalLogit]:
    from inference import evaluate
    from inference.prompts import EvidenceRanker
    from inference.ranking import Ranking
    from r2rec.catalog import items_as_of
    from r2rec.errors import R2RecError
    from r2rec.evidence import load_evidence

    data = evaluate.load(lakehouse, ds)
    samples = evaluate.subsample(data.eval_samples, max_samples)
    train = training_lists(lakehouse, ds)
    if not train:
        raise R2RecError(f"no training lists for ds={ds}: nothing to fit the ranker on")
    audience = audiences(data.edges)
    ids = {s.sample_id for s in (*train, *samples)}
    evidence = load_evidence(lakehouse, ds, "samples", ids)
    items = items_as_of(lakehouse, ds) if content else {}

    def x_of(lists):
        x = np.stack([features(s, evidence.get(s.sample_id, {}), audience) for s in lists])
        if content:
            x = np.concatenate([x, np.stack([content_features(s, items) for s in lists])], -1)
        return x

    y = np.array([s.candidates.index(s.target_item_id) for s in train])
    model = ConditionalLogit().fit(x_of(train), y)
    base = EvidenceRanker(lakehouse, ds).rank(samples)
    learned = []
    for s, scored, order in zip(samples, model.scores(x_of(samples)), base, strict=True):
        # Ties (equal features) keep the evidence ranker's order.
        place = {item: k for k, item in enumerate(order.items)}
        best = sorted(s.candidates, key=lambda i: (-scored[s.candidates.index(i)], place[i]))
        learned.append(Ranking(s.sample_id, s.seed, best))
    return paired_rows(ds, samples, learned, base), model


def main(argv: list[str] | None = None) -> int:
    from r2rec.config import parse_ds
    from r2rec.lakehouse import Lakehouse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lakehouse", required=True)
    p.add_argument("--ds", required=True)
    p.add_argument("--max-samples", type=int, default=0, help="per split, by hash (0 = all)")
    p.add_argument("--content", action="store_true", help="add the item text's genres and year")
    p.add_argument("--record", help="append the table to this Markdown file")
    args = p.parse_args(argv)
    if args.max_samples < 0:
        p.error("--max-samples >= 0")
    ds = parse_ds(args.ds)
    rows, model = compare(Lakehouse(args.lakehouse), ds, args.max_samples, args.content)
    names = FEATURES + CONTENT * args.content
    weights = "\n".join(
        f"| {name} | {w:+.3f} |" for name, w in zip(names, model.weights, strict=True)
    )
    name = f"{NAME} + genres, year" if args.content else NAME
    text = (
        table(rows, name, "evidence order")
        + "\n\nWeights (standardised features; the largest gradient left "
        + f"{model.gradient:.1e}):\n\n| feature | weight |\n|---|---|\n"
        + weights
    )
    print(text)
    if args.record:
        record_section(
            args.record,
            "A ranker learned over what the prompt shows"
            + (" and the items' genres and years" * args.content)
            + ", against the evidence order",
            f"`python -m bench.evidence_learned --ds {ds} --max-samples {args.max_samples}"
            f"{' --content' * args.content}` "
            f"on lakehouse `{Path(args.lakehouse).name}`: a conditional logit fitted on "
            "every training list of the date, every seed of each valid/test sample; "
            "intervals over samples, the difference paired.\n\n" + text,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
