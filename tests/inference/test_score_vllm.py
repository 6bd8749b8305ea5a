"""The scorer on the real vLLM engine (CPU) with a tiny random model, and kill-and-resume.

A random model writes nonsense, which is what makes it a good test of the parts that
must hold whatever the model says: every candidate ranked once, the answer first,
scores that are log-probabilities, invalid output flagged, and a run killed with
SIGKILL half way resumed without scoring a chunk twice.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import pytest

from inference import score
from inference.engine import Candidate, LLMScorer, ScoreRequest
from r2rec.contracts import RECOMMENDATIONS, SCORE_CHUNKS
from tests.inference.test_score import DS, USERS, write_eval_inputs

pytestmark = pytest.mark.slow
ENV = {"R2REC_VLLM_MEMORY_FRACTION": "0.05"}


@pytest.fixture(scope="module")
def scorer(tiny_model_dir):
    os.environ.update(ENV)
    return LLMScorer(tiny_model_dir, max_new_tokens=12, max_model_len=1024)


def test_real_engine_ranks_every_candidate_by_label_logprob(scorer):
    cands = tuple(Candidate(f"C{k}", f"i{k}", f"Movie {k}") for k in range(1, 13))
    requests = [
        ScoreRequest("a", ("Alien (1979)", "Brazil (1985)"), cands),
        ScoreRequest("b", ("Heat (1995)",), cands[:5]),
        # titles are capped at 120 characters, so only a long history outgrows 1024 tokens
        ScoreRequest("too-long", tuple(f"A long title {k} " * 8 for k in range(150)), cands[:3]),
        ScoreRequest("empty", ("Heat (1995)",), ()),
    ]
    out = {s.key: s for s in scorer.score(requests)}
    for key, n in (("a", 12), ("b", 5)):
        result = out[key]
        labels = [c.label for c, _ in result.ranked]
        assert sorted(labels) == sorted(c.label for c in cands[:n])  # each exactly once
        rest = [v for _, v in result.ranked[1:]]
        assert rest == sorted(rest, reverse=True)  # after the answer: by log-probability
        assert all(v <= 0 for _, v in result.ranked)
        assert 0 < sum(math.exp(v) for _, v in result.ranked) <= 1 + 1e-4  # a distribution
        assert result.answer_valid is False and result.constrained  # a random model's output
        assert result.errors
    assert out["too-long"].history_truncated is True and out["too-long"].errors
    assert len(out["too-long"].ranked) == 3
    assert out["a"].history_truncated is False
    assert out["empty"].errors == ["no_candidates"] and out["empty"].ranked == []
    # greedy: the same requests give the same ranking and reasoning
    again = {s.key: s for s in scorer.score(requests[:2])}
    assert [c.label for c, _ in again["a"].ranked] == [c.label for c, _ in out["a"].ranked]
    assert again["a"].reasoning == out["a"].reasoning


def test_sigkill_half_way_then_rerun_scores_each_chunk_once(lakehouse, tiny_model_dir, scorer):
    write_eval_inputs(lakehouse)
    cmd = [
        sys.executable, "-m", "inference.score", "--ds", DS, "--lakehouse", lakehouse.root,
        "--model", tiny_model_dir, "--max-new-tokens", "256", "--chunk-size", "1",
        "--shards", "2", "--top-k", "3",
    ]  # fmt: skip
    # 256 new tokens make each one-user chunk take about a second: slow enough for the
    # poll below to kill the run between chunks, even with cheap prefix-cached ranking.
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # SIGKILL the whole group: the engine core process too
    )
    killed_after = None
    deadline = time.monotonic() + 600
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if lakehouse.exists(SCORE_CHUNKS):
                done = {r["chunk"] for r in lakehouse.read_arrow(SCORE_CHUNKS).to_pylist()}
                if done:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    killed_after = len(lakehouse.read_arrow(SCORE_CHUNKS).to_pylist()) // 3
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert killed_after is not None, "the scoring run committed no chunk before it ended"
    assert 1 <= killed_after < len(USERS), "the kill came too late to test a resume"
    assert not lakehouse.exists(RECOMMENDATIONS)

    report = score.run(
        lakehouse,
        DS,
        model=tiny_model_dir,
        top_k=3,
        shards=2,
        chunk_size=1,
        scorer_factory=lambda: scorer,
    )
    assert report["skipped_chunks"] == killed_after
    assert report["generated_chunks"] == len(USERS) - killed_after
    recs = lakehouse.read_arrow(RECOMMENDATIONS).to_pylist()
    assert sorted(r["user_id"] for r in recs if r["rank"] == 1) == USERS  # each user once
    assert len({(r["user_id"], r["rank"]) for r in recs}) == len(recs) == 3 * len(USERS)
    runs: dict = {}
    for r in lakehouse.read_arrow(SCORE_CHUNKS).to_pylist():
        runs.setdefault((r["shard"], r["chunk"]), set()).add(r["run_id"])
    assert all(len(v) == 1 for v in runs.values())  # no chunk generated twice
    assert len(set().union(*runs.values())) == 2  # the killed run's chunks were kept


def test_a_lora_adapter_changes_the_scores_served_unmerged_or_merged(
    tiny_model_dir, tmp_path, scorer, monkeypatch
):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    # init_lora_weights=False: random A and B, so the adapter really changes the model.
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM")  # fmt: skip
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")

    adapted = LLMScorer(
        tiny_model_dir, str(tmp_path / "adapter"), max_new_tokens=12, max_model_len=1024,
        merge_lora=False,
    )  # fmt: skip
    assert adapted.version.startswith(scorer.version + "+adapter@")
    assert adapted.serve_path == tiny_model_dir and adapted._lora is not None
    cands = tuple(Candidate(f"C{k}", f"i{k}", f"Movie {k}") for k in range(1, 7))
    request = [ScoreRequest("a", ("Alien (1979)", "Brazil (1985)"), cands)]
    (plain,), (lora,) = scorer.score(request), adapted.score(request)
    assert sorted(c.label for c, _ in lora.ranked) == [c.label for c in cands]
    lora_scores = dict((c.label, v) for c, v in lora.ranked)
    assert lora_scores != pytest.approx(dict((c.label, v) for c, v in plain.ranked))

    monkeypatch.setenv("R2REC_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("R2REC_MERGE_LORA", raising=False)
    # CPU default: the adapter merged into a cached copy of the base, same version, same
    # scores (up to float32 rounding), no LoRA kernels.
    merged = LLMScorer(
        tiny_model_dir, str(tmp_path / "adapter"), max_new_tokens=12, max_model_len=1024,
    )  # fmt: skip
    assert merged._lora is None and merged.serve_path.startswith(str(tmp_path / "cache"))
    assert merged.version == adapted.version
    (fused,) = merged.score(request)
    assert dict((c.label, v) for c, v in fused.ranked) == pytest.approx(lora_scores, abs=1e-3)
    assert fused.completion == lora.completion
