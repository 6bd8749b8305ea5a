"""The scoring job's logic: rows, checks, shards and chunks, resume, publish, redaction.

The engine is replaced here by a small deterministic scorer (the logic around it is
what is tested); tests/inference/test_score_vllm.py runs the real vLLM engine.
"""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from inference import score
from inference.engine import Candidate, Scored, order_labels, reasoning_text
from r2rec.contracts import (
    CANDIDATE_EVIDENCE,
    CANDIDATES,
    ITEMS,
    JOB_METRICS,
    RECOMMENDATIONS,
    SAMPLES,
    SCORE_CHUNKS,
)
from r2rec.errors import DataQualityError, R2RecError
from r2rec.labels import LabelTrie, reasoning_prefix
from r2rec.prompt import RecPrompt

DS = "2026-03-01"
USERS = [f"u{k}" for k in range(10)]
N = 5


def write_eval_inputs(lakehouse, ds: str = DS, users=USERS, title_prefix: str = "Movie") -> None:
    from datetime import UTC, datetime

    lakehouse.overwrite(
        ITEMS,
        [
            {
                "item_id": f"i{k}",
                "title": f"{title_prefix} {k}",
                "year": None,
                "genres": [],
                "text": f"{title_prefix} {k}",
                "ds": "2026-01-01",
                "source": "s",
            }
            for k in range(40)
        ],
        partition={"ds": "2026-01-01", "source": "s"},
    )
    samples, cands = [], []
    for u, user in enumerate(users):
        sid = f"{user}:9"
        target = f"i{u}"
        samples.append(
            {
                "ds": ds,
                "split": "test",
                "sample_id": sid,
                "user_id": user,
                "position": 9,
                "history": [f"i{20 + u}", f"i{21 + u}"],
                "target_item_id": target,
                "target_ts": datetime(2026, 2, 1, tzinfo=UTC),
            }
        )
        for seed in (0, 1):
            items = [target, *[f"i{10 + (u + j + seed) % 10}" for j in range(N - 1)]]
            cands.append(
                {
                    "ds": ds,
                    "split": "test",
                    "sample_id": sid,
                    "seed": seed,
                    "user_id": user,
                    "target_item_id": target,
                    "items": items,
                    "labels": [f"C{j + 1}" for j in range(N)],
                    "target_label": "C1",
                    "sampler": "uniform",
                }
            )
    lakehouse.overwrite(SAMPLES, samples, partition={"ds": ds})
    lakehouse.overwrite(CANDIDATES, cands, partition={"ds": ds})
    # The first half of the users have a chain to their target; the others have none.
    lakehouse.overwrite(
        CANDIDATE_EVIDENCE,
        [
            {"ds": ds, "scope": "samples", "context_id": f"{user}:9", "user_id": user,
             "item_id": f"i{u}", "cutoff": datetime(2026, 2, 1, tzinfo=UTC), "users": 3,
             "paths": 3, "overlap": 0.2, "score": 0.6, "via": [f"i{21 + u}"], "via_users": [3]}
            for u, user in enumerate(users[: len(users) // 2])
        ],
        partition={"ds": ds, "scope": "samples"},
    )  # fmt: skip


class FakeScorer:
    """Ranks candidates in reverse display order; optionally invalid, leaky or crashing."""

    def __init__(self, invalid=(), leak=(), crash_after: int | None = None):
        self.invalid, self.leak, self.crash_after = set(invalid), set(leak), crash_after
        self.batches: list[list[str]] = []

    def score(self, requests):
        if self.crash_after is not None and len(self.batches) >= self.crash_after:
            raise RuntimeError("killed")
        self.batches.append([r.key for r in requests])
        out = []
        self.prompts = getattr(self, "prompts", []) + [r.prompt for r in requests]
        for r in requests:
            ranked = [(c, -float(k)) for k, c in enumerate(reversed(r.candidates))]
            text = f"Step 1: {r.key} likes sequels." if r.key in self.leak else "Step 1: ok."
            valid = r.key not in self.invalid
            checks = {"names_top": valid, "grounded": True, "no_repeat": r.key not in self.leak}
            out.append(
                Scored(r.key, ranked, text, text, valid, [] if valid else ["bad"], list(r.flags),
                       checks=checks)
            )  # fmt: skip
        return out


def run(lakehouse, scorer, **kw):
    kw.setdefault("model_version", "fake@1")
    kw.setdefault("top_k", 3)
    kw.setdefault("shards", 2)
    kw.setdefault("chunk_size", 2)
    return score.run(lakehouse, DS, scorer_factory=lambda: scorer, **kw)


def recs(lakehouse, ds=DS, mode="eval"):
    table = lakehouse.read_arrow(RECOMMENDATIONS, partitions=[("ds", "=", ds), ("mode", "=", mode)])
    return sorted(table.to_pylist(), key=lambda r: (r["user_id"], r["rank"]))


# ---- pure parts of the engine -----------------------------------------------------------


def test_label_trie_scores_each_label_by_the_tokens_that_decide_it():
    # C1] = C 1 ], C12] = C 1 2 ], C2] = C 2 ]  (token ids: C=7, 1=1, 2=2, ]=9). C12 is
    # decided at "2" and C2 at "2" after C; C1 needs its "]", since C12 extends "C 1".
    trie = LabelTrie({"C1": [7, 1, 9], "C12": [7, 1, 2, 9], "C2": [7, 2, 9]})
    assert trie.labels == {"C1": (7, 1, 9), "C12": (7, 1, 2), "C2": (7, 2)}
    assert trie.nodes() == [((), [7]), ((7,), [1, 2]), ((7, 1), [2, 9])]
    lp = {(): {7: -0.1}, (7,): {1: -1.0, 2: -2.0}, (7, 1): {9: -0.5, 2: -3.0}}
    scores = trie.label_logprobs(lp)
    assert scores == pytest.approx({"C1": -1.6, "C12": -4.1, "C2": -2.1})
    assert trie.greedy(lp) == "C1"  # C (only child), then 1 (-1 > -2), then ] (-0.5 > -3)
    lp[(7, 1)] = {9: -3.0, 2: -0.5}
    assert trie.greedy(lp) == "C12"
    # greedy is not the best whole label: C2 (-2.1) beats C12 (-0.1 - 1.0 - 1.5 = -2.6),
    # but a greedy decode commits to "1" first
    lp[(7, 1)] = {9: -1.7, 2: -1.5}
    assert trie.label_logprobs(lp)["C2"] > trie.label_logprobs(lp)["C12"]
    assert trie.greedy(lp) == "C12"
    # a tie goes to the lower token id; a child the engine did not return scores -inf
    # rather than a made-up value, and a greedy decode never takes it
    lp[(7,)] = {1: -1.0, 2: -1.0}
    assert trie.greedy(lp) == "C12"
    del lp[(7, 1)][2]
    assert trie.label_logprobs(lp)["C12"] == -math.inf and trie.greedy(lp) == "C1"


def test_label_trie_with_twenty_labels_needs_four_requests_and_refuses_duplicates():
    digits = {str(d): 10 + d for d in range(10)}
    tokens = {f"C{k}": [7, *(digits[c] for c in str(k)), 9] for k in range(1, 21)}
    trie = LabelTrie(tokens)
    assert [prefix for prefix, _ in trie.nodes()] == [(), (7,), (7, 11), (7, 12)]
    assert trie.labels["C3"] == (7, 13) and trie.labels["C1"] == (7, 11, 9)
    assert trie.labels["C20"] == (7, 12, 10) and trie.labels["C2"] == (7, 12, 9)
    # a label that another extends entirely is scored by all its tokens
    nested = LabelTrie({"A": [1, 2], "AB": [1, 2, 3]})
    assert nested.labels == {"A": (1, 2), "AB": (1, 2, 3)}
    assert nested.greedy({(): {1: 0.0}, (1,): {2: 0.0}, (1, 2): {3: 0.0}}) == "A"
    with pytest.raises(ValueError, match="same tokens"):
        LabelTrie({"C1": [7, 1], "D1": [7, 1]})


def test_requests_go_to_the_engine_in_groups_that_fit_half_the_kv_cache():
    from inference.engine import LLMScorer, ScoreRequest, _Prepared
    from r2rec.prompt import SHAPE

    scorer = LLMScorer.__new__(LLMScorer)  # the grouping only, no engine
    scorer.max_new_tokens = 100
    each = 100 + SHAPE.answer_margin  # a request's room beyond its prompt
    prepared = [
        _Prepared(ScoreRequest(f"u{k}", RecPrompt((), ()), ()), [0] * n, RecPrompt((), ()), [], [])
        for k, n in enumerate([300, 200, 500, 5000, 100])
    ]

    def groups(kv_tokens):
        scorer.kv_tokens = kv_tokens
        return [[p.request.key for p in g] for g in scorer._cache_groups(prepared)]

    half = 2 * (300 + 200 + 2 * each)  # u0 and u1 fill half the cache exactly
    assert groups(half) == [["u0", "u1"], ["u2"], ["u3"], ["u4"]]  # in order, none lost
    assert groups(half - 2) == [["u0"], ["u1"], ["u2"], ["u3"], ["u4"]]
    # an engine that did not report its cache: one group
    assert groups(0) == [["u0", "u1", "u2", "u3", "u4"]]
    assert groups(10**9) == groups(0)


def test_order_labels_puts_the_answer_first_then_logprob_then_display_order():
    scores = {"C1": -1.0, "C2": -0.5, "C3": -1.0, "C4": -3.0}
    labels = ["C1", "C2", "C3", "C4"]
    assert order_labels("C4", scores, labels) == ["C4", "C2", "C1", "C3"]
    assert order_labels(None, scores, labels) == ["C2", "C1", "C3", "C4"]
    assert order_labels("C9", scores, labels) == ["C2", "C1", "C3", "C4"]  # not a label


def test_order_labels_ranks_the_rest_by_the_prompts_evidence_then_logprob():
    labels = ["C1", "C2", "C3", "C4", "C5"]
    scores = {"C1": -1.0, "C2": -3.0, "C3": -0.5, "C4": -9.0, "C5": -2.0}
    evidence = ["C4", "C2", "C1"]  # strongest first, as the prompt lists them
    assert order_labels("C2", scores, labels, evidence) == ["C2", "C4", "C1", "C3", "C5"]
    # the answer is not repeated; labels without evidence follow by log-probability
    assert order_labels("C3", scores, labels, evidence) == ["C3", "C4", "C2", "C1", "C5"]
    assert order_labels(None, scores, labels, evidence) == ["C4", "C2", "C1", "C3", "C5"]
    # what is not a candidate of the prompt is ignored, duplicates count once
    assert order_labels("C5", scores, labels, ["C9", "C1", "C1"]) == ["C5", "C1", "C3", "C2", "C4"]
    assert order_labels("C5", scores, labels, ()) == order_labels("C5", scores, labels)


def test_reasoning_prefix_and_text():
    done = "<think>\nStep 1: likes sci-fi.\n</think>\n<answer>[C2]</answer>"
    assert reasoning_prefix(done) == "<think>\nStep 1: likes sci-fi.\n"
    assert reasoning_text(done, ["likes sci-fi."]) == "Step 1: likes sci-fi."
    rambling = "The user interacted with <answer> things"
    assert reasoning_prefix(rambling) == "The user interacted with\n"
    assert reasoning_text("no tags at all", []) == "no tags at all"


def test_redact_user_id_only_where_the_prompt_did_not_contain_it():
    assert score.redact_user_id("Step 1: u3 loves it", "u3", ["Movie 3"]) == (
        "Step 1: [user] loves it",
        True,
    )
    # "1" is in the prompt (Step 1, years): a model repeating it leaks nothing
    assert score.redact_user_id("Step 1: fine", "1", ["Step 1: ..."]) == ("Step 1: fine", False)
    assert score.redact_user_id("user u31 here", "u3", []) == ("user u31 here", False)


# ---- the job ------------------------------------------------------------------------------


def test_eval_run_publishes_top_k_candidates_per_user(lakehouse):
    write_eval_inputs(lakehouse)
    fake = FakeScorer(invalid={"u2"}, leak={"u5"})
    report = run(lakehouse, fake)
    rows = recs(lakehouse)
    assert report["published_users"] == 10 and report["generated_chunks"] == report["chunks"]
    assert sorted({r["user_id"] for r in rows}) == USERS
    by_user = {u: [r for r in rows if r["user_id"] == u] for u in USERS}
    for u, k in zip(USERS, range(10), strict=True):
        items = [r["item_id"] for r in by_user[u]]
        # reverse display order of seed 0's candidates: the last three
        expected = [f"i{10 + (k + j) % 10}" for j in (3, 2, 1)]
        assert items == expected
        assert [r["rank"] for r in by_user[u]] == [1, 2, 3]
        assert {r["sample_id"] for r in by_user[u]} == {f"{u}:9"}
    assert {r["answer_valid"] for r in by_user["u2"]} == {False}
    assert by_user["u5"][0]["reasoning"] == "Step 1: [user] likes sequels."
    assert "user_id_redacted" in by_user["u5"][0]["errors"]
    assert report["invalid_share"] == 0.1
    assert {r["model_version"] for r in rows} == {"fake@1"}
    # The prompt contract built each prompt: evidence where a chain reaches a candidate,
    # the paper's prompt (flagged) where none does.
    assert {r["evidence"] for r in rows} == {"chains"}
    assert {u for u in USERS if by_user[u][0]["prompt_flags"] == ["no_evidence"]} == set(USERS[5:])
    with_evidence = [p for p in fake.prompts if p.evidence is not None]
    assert len(with_evidence) == 5 and all(list(p.evidence) == ["C1"] for p in with_evidence)
    assert by_user["u2"][0]["reasoning_names_top"] is False
    assert by_user["u3"][0]["reasoning_names_top"] is True
    metrics = {
        r["metric"]: r["value"]
        for r in lakehouse.read_arrow(
            JOB_METRICS, partitions=[("job", "=", "score.eval")]
        ).to_pylist()
    }
    assert metrics["users"] == 10 and metrics["invalid_share"] == 0.1
    assert metrics["dq.k_distinct_items"] == 0
    # the published reasoning's checks, per user: u2's names no top item, u5's repeats
    assert metrics["reasoning_names_top"] == report["reasoning_names_top"] == 0.9
    assert metrics["reasoning_no_repeat"] == 0.9 and metrics["reasoning_grounded"] == 1.0


def test_a_crashed_run_resumes_without_regenerating_committed_chunks(lakehouse):
    write_eval_inputs(lakehouse)
    with pytest.raises(RuntimeError, match="killed"):
        run(lakehouse, FakeScorer(crash_after=2))
    staged = lakehouse.read_arrow(SCORE_CHUNKS).to_pylist()
    first_run = {(r["shard"], r["chunk"]) for r in staged}
    assert len(first_run) == 2
    assert not lakehouse.exists(RECOMMENDATIONS)  # nothing published by the crashed run

    again = FakeScorer()
    report = run(lakehouse, again)
    assert report["skipped_chunks"] == 2
    assert report["generated_chunks"] == report["chunks"] - 2
    scored_again = [u for batch in again.batches for u in batch]
    assert len(scored_again) == len(set(scored_again)) == 10 - 2 * 2
    rows = recs(lakehouse)
    assert len(rows) == 30 and len({(r["user_id"], r["rank"]) for r in rows}) == 30
    # every chunk comes from exactly one run: none was generated twice
    staged = lakehouse.read_arrow(SCORE_CHUNKS).to_pylist()
    runs = {}
    for r in staged:
        runs.setdefault((r["shard"], r["chunk"]), set()).add(r["run_id"])
    assert all(len(v) == 1 for v in runs.values())
    assert len({next(iter(v)) for v in runs.values()}) == 2


def test_changed_inputs_are_scored_again_not_reused(lakehouse):
    write_eval_inputs(lakehouse)
    run(lakehouse, FakeScorer())
    write_eval_inputs(lakehouse, title_prefix="Film")  # same users, new item texts
    again = FakeScorer()
    report = run(lakehouse, again)
    assert report["skipped_chunks"] == 0 and report["generated_chunks"] == report["chunks"]
    # a plain rerun reuses everything and starts no engine
    never = FakeScorer(crash_after=0)
    assert run(lakehouse, never)["generated_chunks"] == 0


def test_shard_tasks_then_publish(lakehouse):
    write_eval_inputs(lakehouse)
    run(lakehouse, FakeScorer(), only_shard=0, publish=False)
    with pytest.raises(R2RecError, match=r"not scored yet \(shards \[1\]\)"):
        run(lakehouse, FakeScorer(), score=False)
    run(lakehouse, FakeScorer(), only_shard=1, publish=False)
    report = run(lakehouse, FakeScorer(crash_after=0), score=False)
    assert report["published_users"] == 10


def test_invalid_share_above_the_limit_publishes_nothing(lakehouse):
    write_eval_inputs(lakehouse)
    run(lakehouse, FakeScorer())
    before = recs(lakehouse)
    with pytest.raises(DataQualityError, match=r"30.0% of answers are invalid"):
        run(
            lakehouse,
            FakeScorer(invalid={"u0", "u1", "u2"}),
            model_version="fake@2",
            max_invalid_share=0.2,
        )
    assert recs(lakehouse) == before


def test_rerun_of_a_date_replaces_exactly_that_date_and_mode(lakehouse):
    write_eval_inputs(lakehouse)
    write_eval_inputs(lakehouse, ds="2026-03-02")
    run(lakehouse, FakeScorer())
    score.run(lakehouse, "2026-03-02", scorer_factory=FakeScorer, model_version="fake@1", top_k=3)
    other_day = recs(lakehouse, "2026-03-02")
    run(lakehouse, FakeScorer(), model_version="fake@2", top_k=2)
    assert {r["model_version"] for r in recs(lakehouse)} == {"fake@2"}
    assert len(recs(lakehouse)) == 20
    assert recs(lakehouse, "2026-03-02") == other_day


def request(key: str, *candidates: Candidate) -> score.ScoreRequest:
    prompt = RecPrompt((), tuple((c.label, c.text) for c in candidates))
    return score.ScoreRequest(key, prompt, tuple(candidates))


def test_a_rerun_with_another_top_k_or_budget_scores_again(lakehouse):
    write_eval_inputs(lakehouse)
    run(lakehouse, FakeScorer())
    for option in ({"top_k": 2}, {"max_new_tokens": 64}, {"evidence": "none"}):
        again = FakeScorer()
        report = run(lakehouse, again, **option)
        assert report["skipped_chunks"] == 0 and again.batches, option  # nothing reused
        assert report["published_users"] == 10
    assert {len([r for r in recs(lakehouse) if r["user_id"] == u]) for u in USERS} == {3}
    assert {r["evidence"] for r in recs(lakehouse)} == {"none"}


def test_publish_check_catches_items_that_are_not_candidates():
    item = score.WorkItem(
        "u1", None, request("u1", Candidate("C1", "a", "A"), Candidate("C2", "b", "B"))
    )
    chunk = score.Chunk(0, 0, (item,), "h")
    base = {"user_id": "u1", "reasoning": ""}
    good = [{**base, "rank": 1, "item_id": "a"}, {**base, "rank": 2, "item_id": "b"}]
    assert set(score.check_rows(good, [chunk], top_k=10).values()) == {0}
    bad = [{**base, "rank": 1, "item_id": "a"}, {**base, "rank": 2, "item_id": "zzz"}]
    fails = score.check_rows(bad, [chunk], top_k=10)
    assert fails["item_is_a_candidate"] == 1
    dup = [{**base, "rank": 1, "item_id": "a"}, {**base, "rank": 2, "item_id": "a"}]
    assert score.check_rows(dup, [chunk], top_k=10)["k_distinct_items"] == 1
    # a user without candidates writes no rows and does not block the batch
    empty = score.WorkItem("u2", None, request("u2"))
    both = score.Chunk(0, 0, (item, empty), "h")
    assert set(score.check_rows(good, [both], top_k=10).values()) == {0}
    assert score.check_rows([], [both], top_k=10)["every_user_once"] == 1  # u1 is missing


def test_bad_mode_and_missing_inputs_are_clear_errors(lakehouse):
    with pytest.raises(R2RecError, match="run the samples job first"):
        run(lakehouse, FakeScorer())
    write_eval_inputs(lakehouse)
    with pytest.raises(R2RecError, match="unknown mode"):
        run(lakehouse, FakeScorer(), mode="nightly")
    with pytest.raises(R2RecError, match="run the retrieval job first"):
        run(lakehouse, FakeScorer(), mode="serve")


def test_subsample_is_deterministic_and_plan_covers_every_user_once():
    items = [score.WorkItem(u, None, request(u, Candidate("C1", "a", "A"))) for u in USERS]
    assert score.subsample(items, 4) == score.subsample(list(reversed(items)), 4)
    chunks = score.plan(items, shards=3, chunk_size=2)
    users = [w.user_id for c in chunks for w in c.items]
    assert sorted(users) == USERS
    assert all(len(c.items) <= 2 for c in chunks)
    assert score.plan(items, 3, 2) == chunks  # stable


def test_arrow_rows_match_the_contract():
    chunk = score.Chunk(1, 2, (score.WorkItem("u1", "u1:3", request("u1")),), "h")
    result = Scored("u1", [(Candidate("C1", "a", "A"), -0.5)], "r", "r", True)
    meta = {"model_version": "m", "prompt_version": "p", "run_id": "x", "evidence": "chains"}
    rows = score.chunk_rows(chunk, [result], DS, "eval", 10, meta)
    table = pa.Table.from_pylist(rows, SCORE_CHUNKS.arrow_schema())
    assert table.num_rows == 1 and table.column("shard").to_pylist() == [1]


def test_a_registered_model_is_served_under_its_registry_version(lakehouse, tmp_path):
    """Rows carry the version the registry row holds, not a fresh hash of the files, so
    recommendations join the registry (and promotion) after the hash's algorithm moved."""
    import datetime as dt
    import json

    from r2rec import registry

    write_eval_inputs(lakehouse)
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (base / "model.safetensors").write_bytes(b"w" * 10)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 4}))
    (adapter / "adapter_model.safetensors").write_bytes(b"a" * 10)
    old = "base@000000000000+adapter@111111111111"
    registry.register(
        lakehouse,
        {
            "model_version": old, "run_id": "sft-old", "ds": DS, "stage": "sft",
            "base_model": "base", "base_version": "base@000000000000",
            "model_path": str(base), "adapter_path": str(adapter), "parent_version": None,
            "run_dir": str(tmp_path), "manifest": "{}",
            "registered_at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        },
    )  # fmt: skip
    report = run(lakehouse, FakeScorer(), model="registry:sft-old", model_version=None)
    assert report["model_version"] == old
    assert {r["model_version"] for r in recs(lakehouse)} == {old}
