"""Properties of the definitions (docs/METHOD.md §10) on random graphs (hypothesis).

They run on the reference implementation, which the Spark jobs equal row for row
(test_pipeline_vs_reference.py); checking each property from the raw interactions,
not from the implementation's own intermediate results.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from r2rec.config import ds_start
from spark_jobs.params import CandidateParams, ChainParams, SampleParams
from spark_jobs.reference import run_reference

DS = "2026-03-01"
T0 = datetime(2026, 2, 1, tzinfo=UTC)

events = st.lists(
    st.tuples(
        st.integers(0, 7),  # user
        st.integers(0, 11),  # item
        st.integers(0, 40),  # day offset from T0: some land on or after D
        st.sampled_from([None, 1.0, 4.0]),
    ),
    min_size=5,
    max_size=80,
)


def rows_from(evts) -> list[dict]:
    return [
        {
            "user_id": f"u{u}",
            "item_id": f"i{i}",
            "rating": r,
            "ts": T0 + timedelta(days=d),
            "ds": "2026-02-15",
            "source": "p",
        }
        for u, i, d, r in evts
    ]


PARAMS = (
    SampleParams(history_len=3, min_history=1, max_train=3),
    CandidateParams(n=4, seeds=(0, 1)),
    ChainParams(top_k=2, fanout=0, min_overlap=2),
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(events)
def test_every_chain_satisfies_the_definition(evts):
    rows = rows_from(evts)
    result = run_reference(rows, DS, *PARAMS)
    cutoff = ds_start(DS)
    first: dict[tuple[str, str], datetime] = {}
    for r in rows:
        if r["ts"] < cutoff:
            key = (r["user_id"], r["item_id"])
            first[key] = min(first.get(key, r["ts"]), r["ts"])
    samples = {s["sample_id"]: s for s in result.samples}
    for c in result.chains:
        s = samples[c["sample_id"]]
        assert s["split"] == "train"
        assert c["user_id"] == s["user_id"] != c["u1"]
        assert c["i1"] == s["target_item_id"] and c["target_ts"] == s["target_ts"]
        assert c["i0"] in s["history"] and c["i0"] != c["i1"]
        # every hop is a real edge, stamped with its time, before the target interaction
        assert first[(c["user_id"], c["i0"])] == c["u0_i0_ts"] <= c["target_ts"]
        assert first[(c["u1"], c["i0"])] == c["u1_i0_ts"] < c["target_ts"]
        assert first[(c["u1"], c["i1"])] == c["u1_i1_ts"] < c["target_ts"]
        # closure, recomputed from the raw edges
        before_u1 = {i for (u, i), t in first.items() if u == c["u1"] and t < c["target_ts"]}
        u0_seq = sorted((t, i) for (u, i), t in first.items() if u == c["user_id"])
        before_u0 = {i for _, i in u0_seq[: int(c["sample_id"].rsplit(":", 1)[1])]}
        assert len(before_u0 & before_u1) == c["overlap"] >= 2
        assert 0 < c["jaccard"] <= 1 and 1 <= c["rank"] <= 2


@FAST
@given(events)
def test_no_candidate_is_a_positive_and_lists_are_exact(evts):
    rows = rows_from(evts)
    result = run_reference(rows, DS, *PARAMS)
    cutoff = ds_start(DS)
    seen: dict[str, set[str]] = {}
    for r in rows:
        if r["ts"] < cutoff:
            seen.setdefault(r["user_id"], set()).add(r["item_id"])
    for c in result.candidates:
        assert len(c["items"]) == len(set(c["items"])) == 4
        assert c["items"].count(c["target_item_id"]) == 1
        assert c["items"][c["labels"].index(c["target_label"])] == c["target_item_id"]
        negatives = set(c["items"]) - {c["target_item_id"]}
        assert not negatives & seen[c["user_id"]]


@FAST
@given(
    events,
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 13), st.integers(28, 60)), max_size=10),
)
def test_as_of_rule_events_on_or_after_d_change_nothing(evts, late):
    rows = rows_from(evts)
    # day offset >= 28 from 2026-02-01 is on or after D = 2026-03-01
    extra = rows_from([(u, i, d, 5.0) for u, i, d in late])
    base = run_reference(rows, DS, *PARAMS)
    more = run_reference(rows + extra, DS, *PARAMS)
    assert base == more


@FAST
@given(events)
def test_same_inputs_and_seed_give_identical_tables(evts):
    rows = rows_from(evts)
    assert run_reference(rows, DS, *PARAMS) == run_reference(list(reversed(rows)), DS, *PARAMS)
