"""Classical baselines (docs/METHOD.md §9): popularity, ItemKNN, ALS and SASRec.

Every baseline is a ``Ranker``: it ranks each sample's N candidates, best first, with
ties broken by item id, and its answer (the first item) is always valid. ``full_rank``
ranks all items instead, for the full-ranking protocol.

Time correctness: a baseline is fitted on ``training_edges`` only, i.e. without each
user's last two edges (the valid and test targets), and scores a sample from that
sample's own history. Items without a training edge are unknown to ALS and SASRec
(no factor, no trained embedding) and score -inf, so they rank last (by item id);
popularity and ItemKNN give them 0, their natural value.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from inference.ranking import EvalSample, Ranking

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import SparkSession

Query = tuple[str, Sequence[str]]  # (user_id, history oldest first)


def sequences(edges: pd.DataFrame) -> dict[str, list[str]]:
    """Each user's items in (ts, item_id) order: the order samples are cut from."""
    ordered = edges.sort_values(["user_id", "ts", "item_id"], kind="mergesort")
    return {u: list(g) for u, g in ordered.groupby("user_id", sort=True)["item_id"]}


def training_edges(edges: pd.DataFrame) -> pd.DataFrame:
    """Each user's edges minus their last two by (ts, item_id): the valid and test targets.

    Those are samples.position n-2 and n-1, so no baseline ever fits on an item it is
    asked to predict for that user.
    """
    ordered = edges.sort_values(["user_id", "ts", "item_id"], kind="mergesort")
    from_end = ordered.groupby("user_id", sort=False).cumcount(ascending=False)
    return ordered[from_end >= 2].reset_index(drop=True)


def _batched(values: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class ScoreRanker:
    """A model that scores every item for a (user, history); ranking is shared here."""

    name = "base"
    batch_size = 256

    def __init__(self) -> None:
        self.items: list[str] = []
        self.index: dict[str, int] = {}
        self.fit_seconds = 0.0

    def fit(self, train: pd.DataFrame, items: Iterable[str] = ()) -> ScoreRanker:
        """Fit on training edges (``training_edges``); ``items`` widens the vocabulary.

        Passing all items as of D lets the full protocol rank items no training edge
        reached (they then score as unknown) instead of silently skipping them.
        """
        start = time.perf_counter()
        # Sorted vocabulary: index order is item-id order, the tie-break everywhere.
        self.items = sorted(set(train["item_id"]) | set(items))
        self.index = {item: i for i, item in enumerate(self.items)}
        self._fit(train)
        self.fit_seconds = time.perf_counter() - start
        return self

    def config(self) -> dict[str, Any]:
        return {}

    def _fit(self, train: pd.DataFrame) -> None:
        raise NotImplementedError

    def _scores(self, queries: Sequence[Query]) -> np.ndarray:
        """Scores (len(queries) x len(self.items)), float64, higher is better."""
        raise NotImplementedError

    def rank(self, samples: Sequence[EvalSample]) -> list[Ranking]:
        rankings = []
        for chunk in _batched(list(samples), self.batch_size):
            scores = self._scores([(s.user_id, s.history) for s in chunk])
            for row, s in zip(scores, chunk, strict=True):
                cand = [
                    (float(row[i]) if (i := self.index.get(c)) is not None else -math.inf, c)
                    for c in s.candidates
                ]
                cand.sort(key=lambda sc: (-sc[0], sc[1]))
                rankings.append(
                    Ranking(s.sample_id, s.seed, [c for _, c in cand], True, [v for v, _ in cand])
                )
        return rankings

    def full_rank(
        self, user_id: str, history: Sequence[str], exclude: Iterable[str], k: int = 10
    ) -> list[str]:
        """The top k of all items except ``exclude``, best first (ties by item id)."""
        return self.full_rank_many([(user_id, history, exclude)], k)[0]

    def full_rank_many(
        self, queries: Sequence[tuple[str, Sequence[str], Iterable[str]]], k: int = 10
    ) -> list[list[str]]:
        out = []
        for chunk in _batched(list(queries), self.batch_size):
            scores = self._scores([(u, h) for u, h, _ in chunk])
            for row, (_, _, exclude) in zip(scores, chunk, strict=True):
                eligible = np.ones(len(self.items), dtype=bool)
                eligible[[self.index[i] for i in exclude if i in self.index]] = False
                idx = np.flatnonzero(eligible)
                neg = -row[idx]
                if len(idx) > k:
                    # Keep everything tied with the k-th best so the id tie-break is exact.
                    keep = neg <= np.partition(neg, k - 1)[k - 1]
                    idx, neg = idx[keep], neg[keep]
                order = np.lexsort((idx, neg))[:k]
                out.append([self.items[i] for i in idx[order]])
        return out


class Popularity(ScoreRanker):
    """Score = number of training interactions of the item."""

    name = "popularity"

    def _fit(self, train: pd.DataFrame) -> None:
        counts = train["item_id"].value_counts()
        self.counts = np.array([float(counts.get(i, 0)) for i in self.items])

    def _scores(self, queries: Sequence[Query]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(queries), len(self.items)))


class ItemKNN(ScoreRanker):
    """Item-item cosine on the binary user x item matrix; score = sum over the history.

    sim(i, j) = |U_i & U_j| / sqrt(|U_i| |U_j|), with sim(i, i) = 0. A candidate's score
    is the sum of its similarities to the sample's history items. Computed as
    X^T (X h / sqrt(n)) / sqrt(n) with a sparse X, so no item x item matrix is built.
    """

    name = "itemknn"

    def _fit(self, train: pd.DataFrame) -> None:
        import torch

        users = {u: i for i, u in enumerate(sorted(set(train["user_id"])))}
        pairs = train[["user_id", "item_id"]].drop_duplicates()
        u_idx = np.array([users[u] for u in pairs["user_id"]], dtype=np.int64)
        i_idx = np.array([self.index[i] for i in pairs["item_id"]], dtype=np.int64)
        degree = np.bincount(i_idx, minlength=len(self.items)).astype(np.float64)
        self.inv_sqrt = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)
        self.n_users = len(users)
        # item x user, binary; COO because torch's CSR is still beta
        self.x = torch.sparse_coo_tensor(
            torch.from_numpy(np.vstack([i_idx, u_idx])),
            torch.ones(len(i_idx), dtype=torch.float64),
            size=(len(self.items), self.n_users),
            check_invariants=True,
        ).coalesce()

    def _scores(self, queries: Sequence[Query]) -> np.ndarray:
        import torch

        h = np.zeros((len(self.items), len(queries)))
        for b, (_, history) in enumerate(queries):
            idx = [self.index[i] for i in set(history) if i in self.index]
            h[idx, b] = self.inv_sqrt[idx]
        # v = X^T h: per query, the users of each history item weighted 1/sqrt(n_h)
        v = torch.sparse.mm(self.x.t(), torch.from_numpy(h))
        s = torch.sparse.mm(self.x, v).numpy() * self.inv_sqrt[:, None]
        # drop sim(h, h) = 1 for history items with any training user; cosines are >= 0,
        # so clipping only removes the rounding left by that subtraction
        s -= (h > 0).astype(np.float64)
        return np.clip(s, 0.0, None).T


@dataclass(frozen=True)
class ALSConfig:
    rank: int = 32
    max_iter: int = 10
    reg_param: float = 0.1
    alpha: float = 1.0  # confidence = 1 + alpha (every training edge is a 1)
    seed: int = 0


class ALS(ScoreRanker):
    """Implicit-feedback ALS (Spark MLlib); score = user factor . item factor.

    Factors are pulled to the driver (n x rank floats) and scored in numpy, which is
    cheaper than a Spark ``transform`` per candidate list. A user with no training edge
    has no factor and no preference: every known item scores 0, so they rank by item
    id (folding such a user in from the history would be a different model). An item
    with no training edge scores -inf.
    """

    name = "als"

    def __init__(self, spark: SparkSession, config: ALSConfig | None = None) -> None:
        super().__init__()
        self.spark = spark
        self.cfg = config or ALSConfig()

    def config(self) -> dict[str, Any]:
        return asdict(self.cfg)

    def _fit(self, train: pd.DataFrame) -> None:
        import pandas as pd
        from pyspark.ml.recommendation import ALS as SparkALS

        user_ids = sorted(set(train["user_id"]))
        self.users = {u: i for i, u in enumerate(user_ids)}
        pairs = train[["user_id", "item_id"]].drop_duplicates()
        frame = pd.DataFrame(
            {
                "user": pairs["user_id"].map(self.users).astype("int32"),
                "item": pairs["item_id"].map(self.index).astype("int32"),
                "rating": 1.0,
            }
        ).sort_values(["user", "item"], kind="mergesort")  # same input order every run
        df = self.spark.createDataFrame(frame.reset_index(drop=True))
        als = SparkALS(
            rank=self.cfg.rank,
            maxIter=self.cfg.max_iter,
            regParam=self.cfg.reg_param,
            alpha=self.cfg.alpha,
            implicitPrefs=True,
            seed=self.cfg.seed,
            userCol="user",
            itemCol="item",
            ratingCol="rating",
        )
        model = als.fit(df.coalesce(1))  # one input partition: blocks and order are fixed
        self.user_factors = _factors(model.userFactors, len(user_ids), self.cfg.rank)
        self.item_factors = _factors(model.itemFactors, len(self.items), self.cfg.rank)
        self.known_items = np.zeros(len(self.items), dtype=bool)
        self.known_items[frame["item"].unique()] = True

    def _scores(self, queries: Sequence[Query]) -> np.ndarray:
        rows = [self.users.get(u) for u, _ in queries]
        u = np.zeros((len(queries), self.cfg.rank))
        for b, r in enumerate(rows):
            if r is not None:
                u[b] = self.user_factors[r]
        s = u @ self.item_factors.T
        s[:, ~self.known_items] = -math.inf
        return s


def _factors(df, n: int, rank: int) -> np.ndarray:
    out = np.zeros((n, rank))
    for row in df.collect():
        out[row["id"]] = row["features"]
    return out


@dataclass(frozen=True)
class SASRecConfig:
    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    max_len: int = 50
    dropout: float = 0.2
    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3  # chosen on ML-100k valid HR@1 (1e-3 needs ~2x the epochs)
    seed: int = 0
    # torch intra-op threads (0 = torch's default). One: the model is small enough that
    # more threads gain little, and on a shared machine OpenMP's spin-waiting threads
    # slowed training tenfold.
    threads: int = 1


class SASRec(ScoreRanker):
    """SASRec (Kang & McAuley 2018) in torch, trained with full softmax cross-entropy.

    Full softmax rather than BCE with sampled negatives: on catalogs of thousands of
    items it costs little, trains faster per epoch and has no sampler randomness, so a
    seed fixes the whole run (init, dropout, batch order). Training sequences are each
    user's training items cut from the end into windows of ``max_len`` next-item pairs,
    left-padded; a sample is scored from its own history (L items), right-aligned like
    the windows, from the last position's state.
    """

    name = "sasrec"

    def __init__(self, config: SASRecConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        base = config or SASRecConfig()
        self.cfg = SASRecConfig(**{**asdict(base), **overrides})
        self.losses: list[float] = []

    def config(self) -> dict[str, Any]:
        return {**asdict(self.cfg), "loss": "full softmax cross-entropy"}

    def _windows(self, train: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        length = self.cfg.max_len
        inputs, targets = [], []
        for _, seq in sorted(sequences(train).items()):
            tokens = [self.index[i] + 1 for i in seq]  # 0 is padding
            src, dst = tokens[:-1], tokens[1:]
            for end in range(len(dst), 0, -length):
                start = max(0, end - length)
                pad = [0] * (length - (end - start))
                inputs.append(pad + src[start:end])
                targets.append(pad + dst[start:end])
        return np.array(inputs, dtype=np.int64), np.array(targets, dtype=np.int64)

    @contextmanager
    def _threads(self) -> Iterator[None]:
        # A fixed count also keeps the float reduction order, hence the result, fixed.
        import torch

        before = torch.get_num_threads()
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _fit(self, train: pd.DataFrame) -> None:
        with self._threads():
            self._train(train)

    def _train(self, train: pd.DataFrame) -> None:
        import torch
        import torch.nn.functional as F

        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.known_items = np.zeros(len(self.items), dtype=bool)
        self.known_items[[self.index[i] for i in set(train["item_id"])]] = True
        inputs, targets = self._windows(train)
        self.net = _sasrec_net(len(self.items), cfg)
        optim = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, betas=(0.9, 0.98))
        gen = torch.Generator().manual_seed(cfg.seed)
        x_all, y_all = torch.from_numpy(inputs), torch.from_numpy(targets)
        self.losses = []
        self.net.train()
        for _ in range(cfg.epochs):
            total, count = 0.0, 0
            for batch in torch.randperm(len(x_all), generator=gen).split(cfg.batch_size):
                x, y = x_all[batch], y_all[batch]
                h = self.net(x)
                real = y > 0
                logits = h[real] @ self.net.item_emb.weight[1:].T
                loss = F.cross_entropy(logits, y[real] - 1)
                optim.zero_grad()
                loss.backward()
                optim.step()
                total += loss.item() * int(real.sum())
                count += int(real.sum())
            self.losses.append(total / max(count, 1))
        self.net.eval()

    def _scores(self, queries: Sequence[Query]) -> np.ndarray:
        import torch

        length = self.cfg.max_len
        x = np.zeros((len(queries), length), dtype=np.int64)
        for b, (_, history) in enumerate(queries):
            tokens = [self.index[i] + 1 for i in history if i in self.index][-length:]
            if tokens:
                x[b, length - len(tokens) :] = tokens
        with torch.no_grad(), self._threads():
            h = self.net(torch.from_numpy(x))[:, -1]
            s = (h @ self.net.item_emb.weight[1:].T).double().numpy()
        s[:, ~self.known_items] = -math.inf
        return s


def _sasrec_net_class():
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
            super().__init__()
            self.cfg = cfg
            self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
            # The output layer is this same table; N(0, 1) would give logits of std
            # sqrt(hidden) and a saturated softmax from the first step.
            nn.init.normal_(self.item_emb.weight, std=cfg.hidden**-0.5)
            with torch.no_grad():
                self.item_emb.weight[0].zero_()
            self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
            self.drop = nn.Dropout(cfg.dropout)
            layer = nn.TransformerEncoderLayer(
                cfg.hidden,
                cfg.heads,
                dim_feedforward=cfg.hidden,
                dropout=cfg.dropout,
                batch_first=True,
                norm_first=True,
            )
            self.encoder = nn.TransformerEncoder(layer, cfg.blocks, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(cfg.hidden)

        def forward(self, seq: torch.Tensor) -> torch.Tensor:
            length = seq.shape[1]
            pos = torch.arange(length, device=seq.device)
            x = self.item_emb(seq) * math.sqrt(self.cfg.hidden) + self.pos_emb(pos)[None]
            pad = seq == 0
            x = self.drop(x) * (~pad)[..., None]
            # Causal, and no real position attends to padding; a padding position may
            # attend to itself, or its softmax row would be all -inf (NaN).
            causal = torch.ones(length, length, dtype=torch.bool).triu(1)
            blocked = causal[None] | pad[:, None, :]
            blocked &= ~torch.eye(length, dtype=torch.bool)[None]
            mask = blocked.repeat_interleave(self.cfg.heads, dim=0)
            return self.norm(self.encoder(x, mask=mask))

    return Net


def _sasrec_net(n_items: int, cfg: SASRecConfig):
    # The nn.Module subclass is defined on first use so importing this module needs no torch.
    return _sasrec_net_class()(n_items, cfg)


BASELINES = ("popularity", "itemknn", "als", "sasrec")


def spark_for(models: Iterable[str]) -> SparkSession | None:
    """A Spark session only when a model needs one (ALS is MLlib's): the others start
    no JVM."""
    if "als" not in set(models):
        return None
    from r2rec.spark import get_spark

    return get_spark()


def make_baseline(name: str, spark: SparkSession | None = None, **options: Any) -> ScoreRanker:
    """A fresh baseline by name; ``options`` go to SASRec (e.g. ``epochs``)."""
    if name == "popularity":
        return Popularity()
    if name == "itemknn":
        return ItemKNN()
    if name == "als":
        if spark is None:
            raise ValueError("the als baseline needs a SparkSession")
        return ALS(spark, options.get("als"))
    if name == "sasrec":
        return SASRec(**options.get("sasrec", {}))
    raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")
