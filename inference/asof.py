"""Popularity and ItemKNN under the LLM's time rule: a sample sees only edges before its target.

The classical baselines (``inference/baselines.py``) fit once on every user's edges minus
the valid and test targets, the leave-one-out protocol of the papers we compare with.
A test sample of user A is then scored with user B's edges from after A's target time,
and with edges tied with it. The evidence may not use those (docs/METHOD.md §2 and
§8a: no edge at or after the target's timestamp informs a sample), nor the user's own
history items rated in the same second as the target. These two rankers apply exactly
that rule to popularity and ItemKNN, so the table can tell how much of ItemKNN's lead
over the evidence ranker is information the evidence may not see, and how much is the
way the evidence scores what it does see.

Sampled protocol only, like the evidence ranker: ranking every item as of each sample's
own time is what the backtest does per date (``inference/backtest.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from inference.ranking import EvalSample, Ranking
from r2rec.errors import R2RecError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def micros(ts: datetime) -> int:
    """Microseconds since the epoch; a naive time is UTC, as the lakehouse stores it."""
    import pandas as pd

    t = pd.Timestamp(ts)
    return (t.tz_localize("UTC") if t.tzinfo is None else t).value // 1000


class AudienceIndex:
    """Each item's users ordered by the time of their first edge with it, so the users
    before any time t are a prefix found by one binary search."""

    def __init__(self, edges: pd.DataFrame):
        import pandas as pd

        e = edges[["user_id", "item_id"]].copy()
        epoch = pd.Timestamp(0, tz="UTC")
        e["t"] = (pd.to_datetime(edges["ts"], utc=True) - epoch) // pd.Timedelta(microseconds=1)
        # A user who took an item twice joined its audience once, at the first edge.
        e = e.sort_values(["item_id", "t", "user_id"], kind="mergesort")
        e = e.drop_duplicates(["user_id", "item_id"], keep="first")
        items = sorted(set(e["item_id"]))
        users = {u: k for k, u in enumerate(sorted(set(e["user_id"])))}
        self.index = {item: k for k, item in enumerate(items)}
        counts = np.bincount(e["item_id"].map(self.index).to_numpy(), minlength=len(items))
        self.ptr = np.concatenate([[0], np.cumsum(counts)])
        self.times = e["t"].to_numpy(dtype=np.int64)
        self.users = e["user_id"].map(users).to_numpy(dtype=np.int64)
        self.n_users = len(users)
        pairs = zip(e["user_id"], e["item_id"], strict=True)
        self.first = dict(zip(pairs, e["t"].tolist(), strict=True))

    def history_before(self, user: str, history: Sequence[str], t: int) -> list[str]:
        """The history items whose edge with ``user`` is strictly before ``t``.

        A sample's history is ordered by (ts, item_id), so it can hold items rated in the
        same second as the target; the evidence may not pass through those (its edge from
        the user is not before the target), and neither may these rankers. An item with
        no edge from the user cannot be placed in time, so it is left out too.
        """
        return [h for h in history if self.first.get((user, h), t) < t]

    def before(self, item: str, t: int) -> np.ndarray:
        """The users with an edge to ``item`` strictly before ``t`` (microseconds)."""
        k = self.index.get(item)
        if k is None:
            return self.users[:0]
        lo, hi = self.ptr[k], self.ptr[k + 1]
        return self.users[lo : lo + np.searchsorted(self.times[lo:hi], t, side="left")]


class AsOfRanker:
    """Ranks each sample's candidates by a score computed from edges before its target;
    ties by item id, as every baseline breaks them."""

    name = "asof"
    rule = ""

    def __init__(self, audience: AudienceIndex):
        # One index serves every as-of ranker of an evaluation: built once from its edges.
        self.audience = audience
        self.detail = {
            "time_rule": "edges strictly before each sample's target_ts",
            "score": self.rule,
        }

    def _scores(self, sample: EvalSample, t: int) -> list[float]:
        raise NotImplementedError

    def rank(self, samples: Sequence[EvalSample]) -> list[Ranking]:
        out = []
        for s in samples:
            if s.target_ts is None:
                raise R2RecError(
                    f"{self.name} ranks as of each sample's target time, and sample "
                    f"{s.sample_id} has none"
                )
            scored = sorted(
                zip(self._scores(s, micros(s.target_ts)), s.candidates, strict=True),
                key=lambda sc: (-sc[0], sc[1]),
            )
            out.append(
                Ranking(s.sample_id, s.seed, [c for _, c in scored], True, [v for v, _ in scored])
            )
        return out


class PopularityAsOf(AsOfRanker):
    """Score = the item's users before the target time."""

    name = "popularity-asof"
    rule = "users of the candidate before the target"

    def _scores(self, sample: EvalSample, t: int) -> list[float]:
        return [float(len(self.audience.before(c, t))) for c in sample.candidates]


class ItemKNNAsOf(AsOfRanker):
    """ItemKNN's cosine sum (``inference.baselines.ItemKNN``) over the audiences before
    the target time: sim(h, c) = |U_h & U_c| / sqrt(|U_h| |U_c|), summed over the
    sample's history items h, with sim(c, c) = 0."""

    name = "itemknn-asof"
    rule = "sum over the history of cosine(history item, candidate), audiences as of t"

    def _scores(self, sample: EvalSample, t: int) -> list[float]:
        weight = np.zeros(self.audience.n_users)
        history = set(self.audience.history_before(sample.user_id, sample.history, t))
        for h in history:
            users = self.audience.before(h, t)
            if len(users):
                weight[users] += 1.0 / math.sqrt(len(users))
        out = []
        for c in sample.candidates:
            users = self.audience.before(c, t)
            if not len(users):
                out.append(0.0)
                continue
            score = float(weight[users].sum()) / math.sqrt(len(users))
            # A candidate in the history met itself above: its cosine with itself is 1.
            out.append(max(score - 1.0, 0.0) if c in history else score)
        return out


ASOF_RANKERS = {r.name: r for r in (PopularityAsOf, ItemKNNAsOf)}
