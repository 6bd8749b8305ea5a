"""Candidate evidence (docs/METHOD.md §8a): Spark equals the reference, nothing leaks.

On random graphs with timestamp ties, the evidence job's rows equal the plain-Python
reference row for row (fan-out caps off and on, both scopes); no row rests on an edge
at or after its prompt's cutoff; and the evidence of a candidate is the same whether
or not it is the target. The evidence score is checked by hand on small graphs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta

import pyarrow as pa
import pytest

from r2rec.config import ds_start
from r2rec.contracts import CANDIDATE_EVIDENCE, CANDIDATES, GRAPH_EDGES, JOB_METRICS, SAMPLES
from r2rec.errors import R2RecError
from spark_jobs import evidence as evidence_job
from spark_jobs import graph as graph_job
from spark_jobs import samples as samples_job
from spark_jobs.params import CandidateParams, ChainParams, SampleParams
from spark_jobs.reference import build_edges, build_evidence
from tests.spark_jobs.test_pipeline_vs_reference import (
    DS,
    T0,
    synthetic_interactions,
    write_interactions,
)

ROW_KEYS = ("context_id", "user_id", "item_id", "users", "paths", "overlap", "score", "via",
            "via_users")  # fmt: skip


def sample_contexts(lakehouse) -> list[dict]:
    """What the job grounds: every sample with candidates, as of its target's time."""
    samples = {r["sample_id"]: r for r in lakehouse.read_arrow(SAMPLES).to_pylist()}
    items: dict[str, set] = defaultdict(set)
    for row in lakehouse.read_arrow(CANDIDATES).to_pylist():
        items[row["sample_id"]] |= set(row["items"])
    return [
        {
            "context_id": sid,
            "user_id": samples[sid]["user_id"],
            "cutoff": samples[sid]["target_ts"],
            "history": samples[sid]["history"],
            "items": sorted(its),
        }
        for sid, its in items.items()
    ]


def job_rows(lakehouse, scope: str = "samples") -> list[dict]:
    rows = lakehouse.read_arrow(
        CANDIDATE_EVIDENCE, partitions=[("ds", "=", DS), ("scope", "=", scope)]
    ).to_pylist()
    return sorted(
        ({k: r[k] for k in ROW_KEYS} for r in rows), key=lambda r: (r["context_id"], r["item_id"])
    )


def reference_rows(edges, contexts, params) -> list[dict]:
    return [{k: r[k] for k in ROW_KEYS} for r in build_evidence(edges, contexts, params, via_max=5)]


def assert_rows_equal(got: list[dict], want: list[dict]) -> None:
    assert [(r["context_id"], r["item_id"]) for r in got] == [
        (r["context_id"], r["item_id"]) for r in want
    ]
    for g, w in zip(got, want, strict=True):
        assert g == {
            **w,
            "overlap": pytest.approx(w["overlap"]),
            "score": pytest.approx(w["score"]),
        }


CASES = {
    "caps_off": (SampleParams(history_len=3, max_train=4), ChainParams(fanout=0), 40),
    "caps_on": (
        SampleParams(history_len=4, max_train=0),
        ChainParams(fanout=3, seed=11, history_decay=0.5, proximity=3.0, proximity_scale=2.0),
        15,
    ),
}


def tied_interactions(seed: int) -> list[dict]:
    """The synthetic graph on a weekly clock: a history item often shares its target's
    timestamp, the case where "before the target" and "earlier in the sequence" differ."""
    rows = synthetic_interactions(seed=seed, users=14, items=24, events=260)
    week = timedelta(days=7)
    return [{**r, "ts": T0 + (r["ts"] - T0) // week * week} for r in rows]


@pytest.fixture(params=sorted(CASES))
def pipeline(request, spark, lakehouse):
    sp, params, min_rows = CASES[request.param]
    write_interactions(lakehouse, tied_interactions(seed=len(request.param) + 5))
    graph_job.run(spark, lakehouse, DS)
    samples_job.run(spark, lakehouse, DS, sp, CandidateParams(n=6, seeds=(0, 7)))
    return lakehouse, params, min_rows


def test_spark_evidence_equals_the_reference(spark, pipeline):
    lakehouse, params, min_rows = pipeline
    report = evidence_job.run(spark, lakehouse, DS, "samples", params)
    edges = lakehouse.read_arrow(GRAPH_EDGES).to_pylist()
    contexts = sample_contexts(lakehouse)
    want = reference_rows(edges, contexts, params)
    assert len(want) >= min_rows  # the graph exercises the logic, or equality proves little
    assert any(r["users"] > 1 for r in want) and any(len(r["via"]) > 1 for r in want)
    assert_rows_equal(job_rows(lakehouse), want)
    assert report["samples.contexts"] == len(contexts)
    assert report["samples.coverage"] == pytest.approx(
        len({r["context_id"] for r in want}) / len(contexts)
    )
    metrics = lakehouse.read_arrow(
        JOB_METRICS, partitions=[("ds", "=", DS), ("job", "=", "evidence.samples")]
    ).to_pylist()
    recorded = {m["metric"]: m["value"] for m in metrics}
    assert recorded["dq.evidence_via_edge_before_cutoff"] == 0
    # Which score the rows carry is recorded, also at the default.
    assert recorded["samples.history_decay"] == params.history_decay
    assert recorded["samples.proximity"] == params.proximity
    assert recorded["samples.proximity_scale"] == params.proximity_scale


def test_no_evidence_rests_on_an_edge_at_or_after_its_cutoff(spark, pipeline):
    lakehouse, params, _ = pipeline
    evidence_job.run(spark, lakehouse, DS, "samples", params)
    edges = {
        (e["user_id"], e["item_id"]): e["ts"] for e in lakehouse.read_arrow(GRAPH_EDGES).to_pylist()
    }
    by_user = defaultdict(set)
    for u, i in edges:
        by_user[u].add(i)
    rows = lakehouse.read_arrow(CANDIDATE_EVIDENCE).to_pylist()
    cutoffs = {c["context_id"]: c["cutoff"] for c in sample_contexts(lakehouse)}
    for r in rows:
        cutoff = cutoffs[r["context_id"]]
        assert r["cutoff"] == cutoff
        for i0, n in zip(r["via"], r["via_users"], strict=True):
            assert edges[(r["user_id"], i0)] < cutoff  # u0 -> i0 before the target
            # n similar users took i0 and the candidate, both before the cutoff
            witnesses = [
                u for u in by_user
                if u != r["user_id"]
                and edges.get((u, i0), cutoff) < cutoff
                and edges.get((u, r["item_id"]), cutoff) < cutoff
            ]  # fmt: skip
            assert len(witnesses) >= n
    # History items tied with the target's time exist in this data, and none is a via item.
    samples = lakehouse.read_arrow(SAMPLES).to_pylist()
    tied = [
        (s, h) for s in samples for h in s["history"] if edges[(s["user_id"], h)] >= s["target_ts"]
    ]
    assert tied, "the data should hold history items tied with their target's time"
    tied_keys = {(s["sample_id"], h) for s, h in tied}
    assert not any((r["context_id"], v) in tied_keys for r in rows for v in r["via"])


def test_a_candidates_evidence_does_not_depend_on_it_being_the_target(spark, pipeline):
    """Relabel every list's target as another candidate: the evidence is unchanged, and
    each row equals what the reference computes without being told the target."""
    lakehouse, params, _ = pipeline
    evidence_job.run(spark, lakehouse, DS, "samples", params)
    before = job_rows(lakehouse)
    cands = lakehouse.read_arrow(CANDIDATES)
    rows = cands.to_pylist()
    for r in rows:  # the target becomes the first other candidate
        other = next(i for i in r["items"] if i != r["target_item_id"])
        r["target_item_id"], r["target_label"] = other, r["labels"][r["items"].index(other)]
    lakehouse.overwrite(CANDIDATES, pa.Table.from_pylist(rows, CANDIDATES.arrow_schema()),
                        partition={"ds": DS})  # fmt: skip
    evidence_job.run(spark, lakehouse, DS, "samples", params)
    assert job_rows(lakehouse) == before
    targets = {(r["sample_id"], r["target_item_id"]) for r in cands.to_pylist()}
    assert any((r["context_id"], r["item_id"]) in targets for r in before)  # targets have rows
    assert any((r["context_id"], r["item_id"]) not in targets for r in before)  # negatives too


def test_serve_scope_grounds_serve_candidates_as_of_the_run_date(spark, lakehouse):
    from r2rec.contracts import SERVE_CANDIDATES
    from spark_jobs import retrieval

    rows = synthetic_interactions(seed=21, users=14, items=24, events=260)
    write_interactions(lakehouse, rows)
    graph_job.run(spark, lakehouse, DS)
    retrieval.run(spark, lakehouse, DS, retrieval.RetrievalParams(n=8, history_len=4, fanout=5))
    params = ChainParams(fanout=4, seed=3)
    evidence_job.run(spark, lakehouse, DS, "serve", params)
    serve = lakehouse.read_arrow(SERVE_CANDIDATES).to_pylist()
    contexts = [
        {"context_id": r["user_id"], "user_id": r["user_id"], "cutoff": ds_start(DS),
         "history": r["history"], "items": r["items"]}
        for r in serve
    ]  # fmt: skip
    want = reference_rows(lakehouse.read_arrow(GRAPH_EDGES).to_pylist(), contexts, params)
    assert len(want) >= 10
    assert_rows_equal(job_rows(lakehouse, "serve"), want)


def test_a_missing_input_is_one_clear_error(spark, lakehouse):
    with pytest.raises(R2RecError, match="no serve_candidates table: run the retrieval job"):
        evidence_job.run(spark, lakehouse, DS, "serve")
    with pytest.raises(R2RecError, match="unknown scope 'nightly'"):
        evidence_job.run(spark, lakehouse, DS, "nightly")


def test_the_score_divides_by_the_square_root_of_the_candidates_audience():
    """Two candidates reached by the same two similar users: the one that nine other users
    also took is the weaker evidence (a popular item collects similar users by being
    popular), by the square root of its audience; the mean overlap is untouched."""
    day = timedelta(days=1)
    taste = ["a", "b", "h"]
    edges = [{"user_id": "u0", "item_id": i, "ts": T0 + k * day} for k, i in enumerate(taste)]
    for u in ("s1", "s2"):  # similar: they share a, b and h with u0
        edges += [{"user_id": u, "item_id": i, "ts": T0} for i in [*taste, "niche", "hit"]]
    edges += [{"user_id": f"o{k}", "item_id": "hit", "ts": T0} for k in range(9)]
    edges.append({"user_id": "late", "item_id": "niche", "ts": T0 + 30 * day})  # after cutoff
    context = {"context_id": "u0:3", "user_id": "u0", "cutoff": T0 + 10 * day,
               "history": ["h"], "items": ["hit", "niche"]}  # fmt: skip
    alike = ChainParams(fanout=0, proximity=0.0)  # every place alike: the by-hand sums
    rows = {r["item_id"]: r for r in build_evidence(edges, [context], alike)}
    jaccard = 3 / 5  # |{a, b, h}| / |{a, b, h, niche, hit}|
    through_h = 1 / 3**0.5  # h's users before the cutoff: u0, s1, s2
    for item, audience in (("niche", 2), ("hit", 11)):
        assert rows[item]["users"] == 2 and rows[item]["overlap"] == pytest.approx(jaccard)
        assert rows[item]["score"] == pytest.approx(2 * jaccard * through_h / audience**0.5)
    assert rows["niche"]["score"] > rows["hit"]["score"]


def test_a_niche_history_item_shared_weighs_more_than_a_popular_one():
    """Two candidates, each reached by one similar user as alike to u0 as the other: the
    one reached through a history item that eleven users took scores below the one reached
    through a history item only u0 and its similar user took, by ItemKNN's cosine terms."""
    day = timedelta(days=1)
    edges = [{"user_id": "u0", "item_id": i, "ts": T0 + k * day} for k, i in enumerate("apn")]
    edges += [{"user_id": "s1", "item_id": i, "ts": T0} for i in ["a", "p", "c1"]]
    edges += [{"user_id": "s2", "item_id": i, "ts": T0} for i in ["a", "n", "c2"]]
    edges += [{"user_id": f"o{k}", "item_id": "p", "ts": T0} for k in range(9)]
    context = {"context_id": "u0:3", "user_id": "u0", "cutoff": T0 + 10 * day,
               "history": ["p", "n"], "items": ["c1", "c2"]}  # fmt: skip
    flat = ChainParams(fanout=0, history_decay=1.0, proximity=0.0)  # p and n alike
    rows = {r["item_id"]: r for r in build_evidence(edges, [context], flat)}
    jaccard = 2 / 4  # both: two of u0's three items shared, four items in all
    assert [rows[c]["users"] for c in ("c1", "c2")] == [1, 1]
    assert rows["c1"]["score"] == pytest.approx(jaccard / 11**0.5)  # p: u0, s1, o0..o8
    assert rows["c2"]["score"] == pytest.approx(jaccard / 2**0.5)  # n: u0, s2


@pytest.mark.parametrize("decay", [1.0, 0.7, 0.25])
def test_a_recent_history_item_shared_weighs_more_than_an_older_one(decay):
    """Two candidates, each reached by one similar user as alike to u0 as the other,
    through the last history item and one more with the same audience: that item's term
    weighs decay^2 for the one reached through the older item (two history items after
    it), decay for the other; at decay 1 they tie. The compiled kernel agrees with the
    reference."""
    day = timedelta(days=1)
    edges = [{"user_id": "u0", "item_id": i, "ts": T0 + k * day} for k, i in enumerate("oma")]
    edges += [{"user_id": "s1", "item_id": i, "ts": T0} for i in ["a", "o", "c1"]]
    edges += [{"user_id": "s2", "item_id": i, "ts": T0} for i in ["a", "m", "c2"]]
    context = {"context_id": "u0:3", "user_id": "u0", "cutoff": T0 + 10 * day,
               "history": ["o", "m", "a"], "items": ["c1", "c2"]}  # fmt: skip
    params = ChainParams(fanout=0, history_decay=decay, proximity=0.0)
    rows = {r["item_id"]: r for r in build_evidence(edges, [context], params)}
    # s1 shares o and a with u0, s2 m and a: both J = 2/4, each candidate's only user.
    # a is the last history item (decay^0, users u0, s1, s2); o has two history items
    # after it, m one (users: u0 and s1, u0 and s2).
    assert rows["c1"]["score"] == pytest.approx(2 / 4 * (decay**2 / 2**0.5 + 1 / 3**0.5))
    assert rows["c2"]["score"] == pytest.approx(2 / 4 * (decay / 2**0.5 + 1 / 3**0.5))
    assert (rows["c1"]["score"] < rows["c2"]["score"]) == (decay < 1)
    assert kernel_scores(edges, context, params) == pytest.approx(
        {c: rows[c]["score"] for c in ("c1", "c2")}
    )


def test_history_decay_is_validated():
    for bad in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(R2RecError, match="history_decay"):
            ChainParams(history_decay=bad)


@pytest.mark.parametrize("bad", [{"proximity": -1.0}, {"proximity": float("nan")},
                                 {"proximity": float("inf")}, {"proximity_scale": 0.0},
                                 {"proximity_scale": float("inf")}])  # fmt: skip
def test_the_proximity_is_validated(bad):
    with pytest.raises(R2RecError, match="proximity"):
        ChainParams(**bad)


@pytest.mark.parametrize("proximity", [0.0, 10.0, 2.5])
def test_a_candidate_chosen_close_to_the_history_item_weighs_more(proximity):
    """Two candidates, each reached by one similar user as alike to u0 as the other,
    through the same history item: s1 chose the candidate right after it, s2 four places
    after it (the same items, in another order). The closer one's term is multiplied by
    1 + p, the other's by 1 + p x exp(-3 / s); with p = 0 they tie. The compiled kernel
    agrees with the reference."""
    day = timedelta(days=1)
    edges = [{"user_id": "u0", "item_id": i, "ts": T0 + k * day} for k, i in enumerate("ah")]
    order = {"s1": ["a", "h", "c1", "f1", "f2", "f3"], "s2": ["a", "h", "f1", "f2", "f3", "c2"]}
    edges += [{"user_id": u, "item_id": i, "ts": T0 + k * day}
              for u, items in order.items() for k, i in enumerate(items)]  # fmt: skip
    context = {"context_id": "u0:2", "user_id": "u0", "cutoff": T0 + 10 * day,
               "history": ["a", "h"], "items": ["c1", "c2"]}  # fmt: skip
    params = ChainParams(fanout=0, proximity=proximity, proximity_scale=10.0)
    rows = {r["item_id"]: r for r in build_evidence(edges, [context], params)}

    # Both users: J = 2/6; a and h each have three users (u0, s1, s2); each candidate
    # one. Through a (decay 0.7, one history item after it): s1 chose c1 two places after
    # a, s2 chose c2 five places after it; through h (decay 1): one and four places.
    def through(gap_a: int, gap_h: int) -> float:
        near = [1 + proximity * math.exp((1 - g) / 10.0) for g in (gap_a, gap_h)]
        return 2 / 6 * (0.7 * near[0] + near[1]) / 3**0.5

    assert rows["c1"]["score"] == pytest.approx(through(2, 1))
    assert rows["c2"]["score"] == pytest.approx(through(5, 4))
    assert (rows["c1"]["score"] > rows["c2"]["score"]) == (proximity > 0)
    assert kernel_scores(edges, context, params) == pytest.approx(
        {c: rows[c]["score"] for c in ("c1", "c2")}
    )


def test_the_score_counts_every_user_the_cap_only_bounds_the_chains():
    """With F users per item (and items per user), the chains summarise the capped users
    only, but the score sums over every user of the candidate: it is the same with the
    cap on or off, also when the similar users differ (no estimate to go wrong)."""
    day = timedelta(days=1)
    taste = ["a", "b", "h"]
    edges = [{"user_id": "u0", "item_id": i, "ts": T0 + k * day} for k, i in enumerate(taste)]
    for k in range(6):  # three share {a, h} with u0 (J = 2/4), three {a, b, h} (J = 3/5)
        items = ["a", "h", "c"] if k < 3 else ["a", "b", "h", "c", "x"]
        edges += [{"user_id": f"s{k}", "item_id": i, "ts": T0} for i in items]
    context = {"context_id": "u0:3", "user_id": "u0", "cutoff": T0 + 10 * day,
               "history": ["h"], "items": ["c"]}  # fmt: skip
    (uncapped,) = build_evidence(edges, [context], ChainParams(fanout=0, proximity=0.0))
    (capped,) = build_evidence(edges, [context], ChainParams(fanout=3, proximity=0.0))
    assert uncapped["users"] == 6 and capped["users"] <= 3
    want = (3 * 2 / 4 + 3 * 3 / 5) / 7**0.5 / 6**0.5  # h: u0 and the six; c: the six
    assert uncapped["score"] == pytest.approx(want)
    assert capped["score"] == pytest.approx(want)


def uncapped_index(edges: list[dict]):
    """The executors' GraphIndex of these edges with the fan-out caps off and int32 ids
    (as ``build_index`` hands them over), and the sorted user and item ids."""
    import numpy as np

    from spark_jobs.chains import GraphIndex

    users = sorted({e["user_id"] for e in edges})
    items = sorted({e["item_id"] for e in edges})
    uid = np.array([users.index(e["user_id"]) for e in edges], dtype=np.int32)
    iid = np.array([items.index(e["item_id"]) for e in edges], dtype=np.int32)
    ts = np.array([(e["ts"] - T0) // timedelta(microseconds=1) for e in edges])
    keep = np.ones(len(edges), dtype=bool)
    names = (np.array(users, dtype=object), np.array(items, dtype=object))
    return GraphIndex.from_edges(*names, uid, iid, ts, keep, keep, audience=True), users, items


def kernel_scores(edges: list[dict], context: dict, params: ChainParams) -> dict[str, float]:
    """The compiled kernel's score of each candidate a chain reaches in one context, on
    ``uncapped_index(edges)`` (whose times count from T0)."""
    import numpy as np

    from spark_jobs.evidence import evidence_for_context
    from spark_jobs.kernels import Workspace

    g, users, items = uncapped_index(edges)
    found = evidence_for_context(
        g, users.index(context["user_id"]), (context["cutoff"] - T0) // timedelta(microseconds=1),
        [items.index(h) for h in context["history"]],
        np.array([items.index(c) for c in context["items"]]), params, Workspace.for_graph(g),
    )  # fmt: skip
    return {items[c]: score for c, _, _, _, score, _, _ in found}


@pytest.mark.parametrize("proximity", [0.0, 10.0])
def test_a_candidate_in_the_history_is_no_hop_to_itself_in_the_score(proximity):
    """The executors' compiled score equals the reference when a candidate is also a
    history item (a served user's history can hold a candidate): its own term leaves the
    sum."""
    import numpy as np

    from spark_jobs.evidence import evidence_for_context
    from spark_jobs.kernels import Workspace

    day = timedelta(days=1)
    chose = {"u0": "abhc", "s1": "abhcd", "s2": "abcd", "s3": "hd"}
    edges = [{"user_id": u, "item_id": i, "ts": T0 + k * day}
             for u, items in chose.items() for k, i in enumerate(items)]  # fmt: skip
    context = {"context_id": "u0", "user_id": "u0", "cutoff": T0 + 10 * day,
               "history": ["h", "c"], "items": ["c", "d"]}  # fmt: skip
    flat = ChainParams(fanout=0, history_decay=1.0, proximity=proximity)
    want = {r["item_id"]: r for r in build_evidence(edges, [context], flat)}
    g, users, items = uncapped_index(edges)
    found = evidence_for_context(
        g, users.index("u0"), 10 * day // timedelta(microseconds=1),
        [items.index("h"), items.index("c")],
        np.array([items.index("c"), items.index("d")]), flat,
        work := Workspace.for_graph(g),
    )  # fmt: skip
    got = {items[c]: (n, score) for c, n, _, _, score, _, _ in found}
    assert set(got) == set(want) == {"c", "d"}
    for item, (n, score) in got.items():
        assert n == want[item]["users"]
        assert score == pytest.approx(want[item]["score"])
    # The workspace is shared by every prompt of an executor: the call leaves it as it was.
    assert not work.item_mark.any() and (work.user_slot == -1).all()
    if not proximity:
        # By hand: c through h only (s1, J = 4/5; s2 chose no history item but c itself),
        # over sqrt(|U_h| = 3) and sqrt(|U_c| = 2); d through h and c (s1) and c (s2,
        # J = 3/5), s3 shares one item only, over sqrt(3) and sqrt(|U_d| = 3).
        assert want["c"]["score"] == pytest.approx(0.8 / 3**0.5 / 2**0.5)
        assert want["d"]["score"] == pytest.approx((0.8 * 2 + 0.6) / 3**0.5 / 3**0.5)


ORDERS = {
    "by time": lambda c: (c["cutoff"], c["user_id"]),
    # The job's order: the overlap counts carry over from a user's previous prompt.
    "by user, then cutoff": lambda c: (c["user_id"], c["cutoff"]),
    "by user, cutoff going back": lambda c: (c["user_id"], -c["cutoff"].timestamp()),
}


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_the_compiled_evidence_equals_the_reference_prompt_after_prompt(order):
    """Many prompts through one workspace, without Spark, in any order: rows equal the
    reference's, so nothing one prompt marks or counts leaks into the next."""
    import numpy as np

    from spark_jobs.evidence import evidence_for_context
    from spark_jobs.kernels import Workspace

    edges = build_edges(tied_interactions(seed=3), DS)  # one edge per (user, item)
    g, users, items = uncapped_index(edges)
    us = timedelta(microseconds=1)
    rng = np.random.default_rng(5)
    contexts = []
    for k, e in enumerate(sorted(edges, key=lambda e: (e["ts"], e["user_id"], e["item_id"]))):
        mine = sorted((x for x in edges if x["user_id"] == e["user_id"] and x["ts"] <= e["ts"]),
                      key=lambda x: (x["ts"], x["item_id"]))  # fmt: skip
        picked = sorted(rng.choice(items, 6, replace=False).tolist())
        contexts.append(
            {"context_id": str(k), "user_id": e["user_id"], "cutoff": e["ts"],
             "history": [x["item_id"] for x in mine[-4:]], "items": picked}
        )  # fmt: skip
    params = ChainParams(fanout=0)
    want = reference_rows(edges, contexts, params)
    work = Workspace.for_graph(g)
    got = []
    for ctx in sorted(contexts, key=ORDERS[order]):
        found = evidence_for_context(
            g, users.index(ctx["user_id"]), (ctx["cutoff"] - T0) // us,
            [items.index(h) for h in ctx["history"]],
            np.array([items.index(i) for i in ctx["items"]]), params, work,
        )  # fmt: skip
        got += [{"context_id": ctx["context_id"], "user_id": ctx["user_id"], "item_id": items[c],
                 "users": n, "paths": p, "overlap": o, "score": s,
                 "via": [items[i] for i in via], "via_users": vu}
                for c, n, p, o, s, via, vu in found]  # fmt: skip
    assert len(want) > 50  # the graph is dense enough for many rows to compare
    assert_rows_equal(
        sorted(got, key=lambda r: (r["context_id"], r["item_id"])),
        sorted(want, key=lambda r: (r["context_id"], r["item_id"])),
    )


def test_item_ids_become_graph_positions_a_column_at_a_time():
    """The executors' lookup: per list, its ids' positions in the graph in list order;
    ids outside the graph (no edge before D) left out, empty and sliced lists kept."""
    import numpy as np

    from spark_jobs.evidence import _positions

    names = pa.array(["a", "b", "c"])
    lists = pa.array([["x", "b", "zz", "a"], [], ["c", "c"], ["q"], ["a"]], pa.list_(pa.string()))
    for part in (lists, lists.slice(1), lists.slice(2, 2), lists.slice(4)):  # the last: all in
        offsets, pos = _positions(part, names)
        assert len(offsets) == len(part) + 1
        got = [pos[offsets[k] : offsets[k + 1]].tolist() for k in range(len(part))]
        want = [[names.to_pylist().index(i) for i in ids if i in names.to_pylist()]
                for ids in part.to_pylist()]  # fmt: skip
        assert got == want
        assert pos.dtype == np.int64
