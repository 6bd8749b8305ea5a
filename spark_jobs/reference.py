"""Plain-Python oracle of the graph, samples, candidates and chains definitions.

A literal, slow, obviously-correct transcription of docs/METHOD.md §10 (dicts, sets,
``sorted()``; no Spark). The Spark jobs are tested row for row against it. The only shared
code is the seeded randomness of ``spark_jobs.sampling``, which both must use.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter

from r2rec.config import ds_start
from r2rec.prompt import candidate_labels
from spark_jobs.params import CandidateParams, ChainParams, SampleParams
from spark_jobs.sampling import CandidateSampler, fanout_order

NOT_ENOUGH_NEGATIVES = "not_enough_negatives"


@dataclass
class ReferenceResult:
    edges: list[dict]  # GRAPH_EDGES columns
    samples: list[dict]  # SAMPLES columns
    candidates: list[dict]  # CANDIDATES columns
    chains: list[dict]  # CHAINS columns
    quarantine: list[dict]  # {"sample_id", "seed", "reason"}
    coverage: float  # share of train samples with >= 1 chain (0.0 without train samples)


# --- helpers ---------------------------------------------------------------------------
def _edges_by_user(edges: list[dict]) -> dict[str, dict[str, dict]]:
    """user_id -> item_id -> edge."""
    by_user: dict[str, dict[str, dict]] = defaultdict(dict)
    for e in edges:
        by_user[e["user_id"]][e["item_id"]] = e
    return by_user


def _users_by_item(edges: list[dict]) -> dict[str, list[str]]:
    """item_id -> users with an edge to it, sorted."""
    by_item: dict[str, list[str]] = defaultdict(list)
    for e in edges:
        by_item[e["item_id"]].append(e["user_id"])
    return {item: sorted(users) for item, users in by_item.items()}


def _sequence(user_edges: dict[str, dict]) -> list[dict]:
    """A user's edges in sequence order: (ts, item_id)."""
    return sorted(user_edges.values(), key=lambda e: (e["ts"], e["item_id"]))


# --- edges -----------------------------------------------------------------------------
def build_edges(interactions: Iterable[dict], ds: str) -> list[dict]:
    """One edge per (user, item) from rows with ds <= D and ts < D: the first interaction.

    On an exact ts tie the highest rating wins (a null rating loses to any number).
    """
    cutoff = ds_start(ds)
    first: dict[tuple[str, str], dict] = {}

    def rank(row: dict) -> tuple:
        rating = row["rating"]
        return (row["ts"], rating is None, -rating if rating is not None else 0.0)

    for row in interactions:
        if row["ds"] > ds or row["ts"] >= cutoff:
            continue
        key = (row["user_id"], row["item_id"])
        if key not in first or rank(row) < rank(first[key]):
            first[key] = row
    edges = []
    for (user_id, item_id), row in sorted(first.items()):
        rating = row["rating"]
        edges.append(
            {
                "ds": ds,
                "user_id": user_id,
                "item_id": item_id,
                "rating": rating,
                "ts": row["ts"],
                "weight": 1.0 if rating is None else float(rating),
            }
        )
    return edges


# --- samples ---------------------------------------------------------------------------
def build_samples(edges: list[dict], ds: str, params: SampleParams) -> list[dict]:
    samples = []
    for user_id, user_edges in _edges_by_user(edges).items():
        seq = _sequence(user_edges)
        n = len(seq)
        positions = [p for p in range(n) if p >= params.min_history]
        train = [p for p in positions if p < n - 2]
        if params.max_train > 0:
            train = sorted(train)[-params.max_train :]
        for p in positions:
            if p == n - 1:
                split = "test"
            elif p == n - 2:
                split = "valid"
            elif p in train:
                split = "train"
            else:
                continue
            samples.append(
                {
                    "ds": ds,
                    "split": split,
                    "sample_id": f"{user_id}:{p}",
                    "user_id": user_id,
                    "position": p,
                    "history": [e["item_id"] for e in seq[max(0, p - params.history_len) : p]],
                    "target_item_id": seq[p]["item_id"],
                    "target_ts": seq[p]["ts"],
                }
            )
    return sorted(samples, key=lambda s: s["sample_id"])


# --- candidates ------------------------------------------------------------------------
def build_candidates(
    edges: list[dict], samples: list[dict], ds: str, params: CandidateParams
) -> tuple[list[dict], list[dict]]:
    """Candidate rows (train: first seed only; valid/test: every seed) and quarantine rows."""
    by_user = _edges_by_user(edges)
    users_by_item = _users_by_item(edges)
    vocabulary = sorted(users_by_item)
    degrees = [len(users_by_item[item]) for item in vocabulary]
    samplers = {
        seed: CandidateSampler(
            vocabulary,
            seed=seed,
            ds=ds,
            n=params.n,
            degrees=degrees if params.sampler == "popularity" else None,
            alpha=params.alpha,
        )
        for seed in params.seeds
    }
    labels = candidate_labels(params.n)
    rows, quarantine = [], []
    for s in samples:
        seeds = params.seeds[:1] if s["split"] == "train" else params.seeds
        positives = set(by_user[s["user_id"]])  # the user's whole sequence as of D
        target = s["target_item_id"]
        for seed in seeds:
            items = samplers[seed].draw(s["user_id"], s["sample_id"], target, positives)
            if items is None:
                quarantine.append(
                    {"sample_id": s["sample_id"], "seed": seed, "reason": NOT_ENOUGH_NEGATIVES}
                )
                continue
            rows.append(
                {
                    "ds": ds,
                    "split": s["split"],
                    "sample_id": s["sample_id"],
                    "seed": seed,
                    "user_id": s["user_id"],
                    "target_item_id": target,
                    "items": items,
                    "labels": list(labels),
                    "target_label": labels[items.index(target)],
                    "sampler": params.sampler,
                }
            )
    key = itemgetter("sample_id", "seed")
    return sorted(rows, key=key), sorted(quarantine, key=key)


# --- chains ----------------------------------------------------------------------------
def build_chains(
    edges: list[dict], samples: list[dict], ds: str, params: ChainParams
) -> list[dict]:
    """Top-K positive chains u0 -> i0 -> u1 -> t for every train sample (§10)."""
    by_user = _edges_by_user(edges)
    users_by_item = _users_by_item(edges)
    F = params.fanout

    def item_users(item: str) -> list[str]:  # fixed per (item, run): over ALL users as of D
        users = users_by_item.get(item, [])
        return fanout_order(params.seed, item, users)[:F] if F > 0 else users

    def user_items(user: str) -> list[str]:  # fixed per (user, run): over ALL items as of D
        items = sorted(by_user[user])
        return fanout_order(params.seed, user, items)[:F] if F > 0 else items

    chains = []
    for s in samples:
        if s["split"] != "train":
            continue
        u0, p, H = s["user_id"], s["position"], s["history"]
        t, t_ts = s["target_item_id"], s["target_ts"]
        seq0 = _sequence(by_user[u0])
        A = {e["item_id"] for e in seq0[:p]}
        U1 = [u for u in item_users(t) if u != u0 and by_user[u][t]["ts"] < t_ts]
        found = []
        for u1 in U1:
            B = {i for i in user_items(u1) if by_user[u1][i]["ts"] < t_ts}
            overlap = len(A & B)
            if overlap < params.min_overlap:
                continue
            jaccard = overlap / len(A | B)
            for j, i0 in enumerate(H):
                if i0 not in B or i0 == t:
                    continue
                recency = (j + 1) / len(H)
                score = jaccard + params.recency_weight * recency
                found.append((u1, i0, overlap, jaccard, recency, score))
        found.sort(key=lambda c: (-c[5], c[0], c[1]))
        for rank, (u1, i0, overlap, jaccard, recency, score) in enumerate(
            found[: params.top_k], start=1
        ):
            chains.append(
                {
                    "ds": ds,
                    "sample_id": s["sample_id"],
                    "chain_id": f"{s['sample_id']}/{rank}",
                    "rank": rank,
                    "user_id": u0,
                    "i0": i0,
                    "u0_i0_ts": by_user[u0][i0]["ts"],
                    "u1": u1,
                    "u1_i0_ts": by_user[u1][i0]["ts"],
                    "i1": t,
                    "u1_i1_ts": by_user[u1][t]["ts"],
                    "target_ts": t_ts,
                    "overlap": overlap,
                    "jaccard": jaccard,
                    "recency": recency,
                    "score": score,
                }
            )
    return sorted(chains, key=lambda c: (c["sample_id"], c["rank"]))


def chain_coverage(samples: list[dict], chains: list[dict]) -> float:
    """Share of train samples with at least one chain; 0.0 when there are none."""
    train = {s["sample_id"] for s in samples if s["split"] == "train"}
    if not train:
        return 0.0
    return len(train & {c["sample_id"] for c in chains}) / len(train)


def run_reference(
    interactions: Iterable[dict],
    ds: str,
    sample_params: SampleParams = SampleParams(),
    candidate_params: CandidateParams = CandidateParams(),
    chain_params: ChainParams = ChainParams(),
) -> ReferenceResult:
    edges = build_edges(interactions, ds)
    samples = build_samples(edges, ds, sample_params)
    candidates, quarantine = build_candidates(edges, samples, ds, candidate_params)
    chains = build_chains(edges, samples, ds, chain_params)
    return ReferenceResult(
        edges=edges,
        samples=samples,
        candidates=candidates,
        chains=chains,
        quarantine=quarantine,
        coverage=chain_coverage(samples, chains),
    )


# --- candidate evidence (docs/METHOD.md §8a) ---------------------------------------------
def build_evidence(
    edges: list[dict], contexts: list[dict], params: ChainParams, via_max: int = 2
) -> list[dict]:
    """Evidence rows for every candidate of every context that a chain reaches.

    A context is one prompt to ground: ``context_id``, ``user_id``, ``cutoff`` (the
    sample's target time, or the start of D when serving), ``history`` (the prompt's
    items, oldest first) and ``items`` (the candidates). Only edges before the cutoff
    count, u0's own included. A chain is
    u0 -> i0 -> u1 -> c with i0 in the history, exactly the chains job's rules with the
    candidate c in place of the target: u1 among c's first F users (seeded), u1's items
    among its first F, every edge before the cutoff, closure |I(u0) ∩ I(u1)| >= 2. Which
    candidate is the target is never an input. ``score`` = over every user u1 of c before
    the cutoff (no cap) that meets the closure and chose a history item other than c:
    Jaccard(u0, u1) x the sum over those history items h of decay^(history items after
    h) / sqrt(users of h before the cutoff) x (1 + p x exp((1 - g) / s)), g how many
    places apart h and c are in u1's sequence (decay, p, s: ``params.history_decay``,
    ``proximity``, ``proximity_scale``); summed, and divided by sqrt(c's users before the
    cutoff but u0).
    """
    by_user = _edges_by_user(edges)
    users_by_item = _users_by_item(edges)
    F = params.fanout

    def item_users(item: str) -> list[str]:
        users = users_by_item.get(item, [])
        return fanout_order(params.seed, item, users)[:F] if F > 0 else users

    def user_items(user: str) -> list[str]:
        items = sorted(by_user[user])
        return fanout_order(params.seed, user, items)[:F] if F > 0 else items

    places: dict[str, dict[str, int]] = {}

    def place(user: str, item: str) -> int:
        """Where the item is in the user's whole sequence (by time, then item id)."""
        if user not in places:
            places[user] = {e["item_id"]: k for k, e in enumerate(_sequence(by_user[user]))}
        return places[user][item]

    def near(user: str, h: str, c: str) -> float:
        gap = abs(place(user, c) - place(user, h))
        return 1 + params.proximity * math.exp((1 - gap) / params.proximity_scale)

    def users_before(item: str, cutoff) -> list[str]:
        return [u for u in users_by_item.get(item, []) if by_user[u][item]["ts"] < cutoff]

    rows = []
    for ctx in contexts:
        u0, cutoff = ctx["user_id"], ctx["cutoff"]
        A = {i for i, e in by_user[u0].items() if e["ts"] < cutoff}
        # A history item tied with the target's time is not before it: no hop through it.
        # Each usable item with its decay^(history items after it).
        n_h = len(ctx["history"])
        weighted = [(i, params.history_decay ** (n_h - 1 - j))
                    for j, i in enumerate(ctx["history"]) if i in A]  # fmt: skip
        H = [i for i, _ in weighted]
        for c in dict.fromkeys(ctx["items"]):
            found = []  # (u1, jaccard, [i0, ...])
            for u1 in item_users(c):
                if u1 == u0 or by_user[u1][c]["ts"] >= cutoff:
                    continue
                B = {i for i in user_items(u1) if by_user[u1][i]["ts"] < cutoff}
                overlap = len(A & B)
                if overlap < params.min_overlap:
                    continue
                hits = [i0 for i0 in H if i0 in B and i0 != c]
                if hits:
                    found.append((u1, overlap / len(A | B), hits))
            if not found:
                continue
            through: dict[str, int] = defaultdict(int)
            for _, _, hits in found:
                for i0 in hits:
                    through[i0] += 1
            # Most users first; then the more recent history item; then the id.
            via = sorted(through, key=lambda i: (-through[i], -H.index(i), i))[:via_max]
            summed = sum(j for _, j, _ in found)
            audience = [u for u in users_before(c, cutoff) if u != u0]
            score = 0.0
            for u1 in audience:  # every user, not only the capped ones
                B = {i for i, e in by_user[u1].items() if e["ts"] < cutoff}
                hits = [(i0, r) for i0, r in weighted if i0 in B and i0 != c]
                if len(A & B) >= params.min_overlap and hits:
                    cosines = sum(
                        r / math.sqrt(len(users_before(h, cutoff))) * near(u1, h, c)
                        for h, r in hits
                    )
                    score += len(A & B) / len(A | B) * cosines
            score /= math.sqrt(len(audience))
            rows.append(
                {
                    "context_id": ctx["context_id"],
                    "user_id": u0,
                    "item_id": c,
                    "users": len(found),
                    "paths": sum(len(h) for _, _, h in found),
                    "overlap": summed / len(found),
                    "score": score,
                    "via": via,
                    "via_users": [through[i] for i in via],
                }
            )
    return sorted(rows, key=lambda r: (r["context_id"], r["item_id"]))
