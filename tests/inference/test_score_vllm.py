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

import pytest

from inference import score
from inference.engine import Candidate, LLMScorer, ScoreRequest
from r2rec import faults
from r2rec.assets import DTYPE_ENV
from r2rec.contracts import RECOMMENDATIONS, SCORE_CHUNKS
from r2rec.labels import answer_prefix
from r2rec.prompt import Evidence, RecPrompt, render_messages
from tests.inference.test_score import DS, USERS, write_eval_inputs

pytestmark = pytest.mark.slow
ENV = {"R2REC_VLLM_KV_CACHE_GIB": "0.25"}
# Both numeric paths run on every machine: bfloat16 is emulated (slowly) on CPUs without it.
DTYPES = ("float32", "bfloat16")
# Merged and unmerged LoRA serving round differently: float32 agrees to ~1e-6, bfloat16
# (8 mantissa bits) to ~1e-2 on log-probabilities of this size.
TOLERANCE = {"float32": 1e-3, "bfloat16": 5e-2}


@pytest.fixture(scope="module", params=DTYPES)
def scorer(request, tiny_model_dir):
    os.environ.update(ENV)
    engine = LLMScorer(tiny_model_dir, max_new_tokens=12, max_model_len=1024, dtype=request.param)
    assert engine.dtype == request.param  # what the engine runs, not only what was asked
    assert engine.kv_tokens >= engine.max_model_len  # the started engine's real cache
    yield engine
    engine.close()


def request(key: str, history: tuple[str, ...], cands: tuple[Candidate, ...], evidence=None):
    prompt = RecPrompt(history, tuple((c.label, c.text) for c in cands), evidence)
    return ScoreRequest(key, prompt, cands)


def test_real_engine_ranks_every_candidate_by_label_logprob(scorer):
    cands = tuple(Candidate(f"C{k}", f"i{k}", f"Movie {k}") for k in range(1, 13))
    evidence = {"C3": Evidence(4, 0.2, ("Alien (1979)",), 0.8)}
    requests = [
        request("a", ("Alien (1979)", "Brazil (1985)"), cands, evidence),
        request("b", ("Heat (1995)",), cands[:5]),
        # titles are capped at 80 characters, so only a long history outgrows 1024 tokens
        request("too-long", tuple(f"A long title {k} " * 8 for k in range(150)), cands[:3]),
        request("empty", ("Heat (1995)",), ()),
    ]
    out = {s.key: s for s in scorer.score(requests)}
    for key, n in (("a", 12), ("b", 5)):
        result = out[key]
        labels = [c.label for c, _ in result.ranked]
        assert sorted(labels) == sorted(c.label for c in cands[:n])  # each exactly once
        # after the answer: the candidate with evidence (C3 in "a"), then by log-probability
        shown = ["C3"] if key == "a" and labels[0] != "C3" else []
        assert labels[1 : 1 + len(shown)] == shown
        rest = [v for _, v in result.ranked[1 + len(shown) :]]
        assert rest == sorted(rest, reverse=True)
        assert all(v <= 0 for _, v in result.ranked)
        assert 0 < sum(math.exp(v) for _, v in result.ranked) <= 1 + 1e-4  # a distribution
        assert result.answer_valid is False and result.constrained  # a random model's output
        assert result.errors
    assert out["too-long"].history_truncated is True and out["too-long"].errors
    assert out["too-long"].flags == ["history_truncated"]
    assert len(out["too-long"].ranked) == 3
    assert out["a"].history_truncated is False
    assert out["empty"].errors == ["no_candidates"] and out["empty"].ranked == []
    # greedy: the same requests give the same ranking and reasoning
    again = {s.key: s for s in scorer.score(requests[:2])}
    assert [c.label for c, _ in again["a"].ranked] == [c.label for c, _ in out["a"].ranked]
    assert again["a"].reasoning == out["a"].reasoning


def test_real_engine_trims_evidence_before_history(scorer):
    """A prompt over the engine's budget only through its evidence keeps its whole history
    and loses evidence (issue 15), counted in the engine's own tokens."""
    cands = tuple(Candidate(f"C{k}", f"i{k}", f"Movie {k}") for k in range(1, 13))
    shown = tuple((c.label, c.text) for c in cands)
    titles = tuple(f"A long title {k} " * 8 for k in range(150))
    evidence = {
        c.label: Evidence(9, 0.25, (titles[-1], titles[-2]), 1.0 / k)
        for k, c in enumerate(cands, 1)
    }
    budget = scorer.max_model_len - scorer._completion_room

    def size(n: int, ev) -> int:
        return len(scorer._prompt_ids(RecPrompt(titles[-n:], shown, ev)))

    # the longest history that fits without evidence, and does not with it
    n = max(k for k in range(1, len(titles) + 1) if size(k, None) <= budget)
    assert size(n, evidence) > budget
    (out,) = scorer.score([request("x", titles[-n:], cands, evidence)])
    assert out.flags == ["evidence_trimmed"] and not out.history_truncated
    assert len(out.ranked) == len(cands) and "prompt_too_long" not in out.errors


KILL_AFTER = 2  # chunks committed before the injected SIGKILL


def test_sigkill_half_way_then_rerun_scores_each_chunk_once(lakehouse, tiny_model_dir, scorer):
    write_eval_inputs(lakehouse)
    cmd = [
        sys.executable, "-m", "inference.score", "--ds", DS, "--lakehouse", lakehouse.root,
        "--model", tiny_model_dir, "--max-new-tokens", "12", "--chunk-size", "1",
        "--shards", "2", "--top-k", "3",
    ]  # fmt: skip
    # The job kills its own process group (the engine core with it) right after its
    # second chunk commit: a real SIGKILL at a known point, whatever the machine's speed.
    fault = {faults.ENV: f"score.chunk_committed:{KILL_AFTER}"}
    proc = subprocess.run(
        cmd,
        env={**os.environ, **ENV, **fault, DTYPE_ENV: scorer.dtype},
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,  # the job leads its own group, so only it and its engine die
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert f"score.chunk_committed #{KILL_AFTER}" in proc.stderr
    committed = lakehouse.read_arrow(SCORE_CHUNKS).to_pylist()
    killed_after = len({(r["shard"], r["chunk"]) for r in committed})
    assert killed_after == KILL_AFTER and len(committed) == 3 * KILL_AFTER
    assert not lakehouse.exists(RECOMMENDATIONS)

    report = score.run(
        lakehouse,
        DS,
        model=tiny_model_dir,
        top_k=3,
        shards=2,
        chunk_size=1,
        max_new_tokens=12,
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


def test_a_lora_adapter_changes_the_model_served_unmerged_or_merged(
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

    def serve(**kwargs) -> LLMScorer:
        return LLMScorer(tiny_model_dir, str(tmp_path / "adapter"), max_new_tokens=12,
                         max_model_len=1024, dtype=scorer.dtype, **kwargs)  # fmt: skip

    adapted = serve(merge_lora=False)
    assert adapted.version.startswith(scorer.version + "+adapter@")
    assert adapted.serve_path == tiny_model_dir and adapted._lora is not None
    assert adapted.dtype == scorer.dtype
    monkeypatch.setenv("R2REC_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("R2REC_MERGE_LORA", raising=False)
    # CPU default: the adapter merged into a cached copy of the base, same version, no
    # LoRA kernels.
    merged = serve()
    assert merged._lora is None and merged.serve_path.startswith(str(tmp_path / "cache"))
    assert merged.version == adapted.version and merged.dtype == scorer.dtype

    # Teacher-forced log-probabilities of fixed texts: the function each engine computes,
    # with no greedy branch that a rounding difference could send elsewhere.
    texts = [
        "The user interacted with Alien (1979) and Brazil (1985). Candidates: [C1] Heat",
        "<think>\nStep 1: the user likes science fiction.\n</think>\n<answer>[C3]</answer>",
    ]
    plain, lora, fused = (engine.token_logprobs(texts) for engine in (scorer, adapted, merged))
    tol = TOLERANCE[scorer.dtype]
    for p, a, f in zip(plain, lora, fused, strict=True):
        assert len(p) == len(a) == len(f) > 10
        assert all(math.isfinite(x) for x in a + f)
        assert max(abs(x - y) for x, y in zip(a, f, strict=True)) <= tol  # merged == LoRA
        assert max(abs(x - y) for x, y in zip(a, p, strict=True)) > 4 * tol  # LoRA changed it

    cands = tuple(Candidate(f"C{k}", f"i{k}", f"Movie {k}") for k in range(1, 7))
    batch = [request("a", ("Alien (1979)", "Brazil (1985)"), cands)]
    (by_lora,), (by_merged,) = adapted.score(batch), merged.score(batch)
    assert sorted(c.label for c, _ in by_lora.ranked) == [c.label for c in cands]
    if scorer.dtype == "float32":  # greedy decoding agrees exactly only without rounding noise
        assert by_merged.completion == by_lora.completion
        merged_scores = dict((c.label, v) for c, v in by_merged.ranked)
        assert merged_scores == pytest.approx(dict((c.label, v) for c, v in by_lora.ranked),
                                              abs=tol)  # fmt: skip


def test_label_logprobs_equal_an_independent_transformers_log_softmax(scorer, tiny_model_dir):
    """Every label's log-probability given prompt + reasoning (its tokens up to the first
    that no other label shares), from vLLM's trie requests, equals teacher forcing in
    transformers (float32): all N finite, one by one. The constrained answer of this
    random model's invalid completion is the greedy path through the same tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cands = tuple(Candidate(f"C{k}", f"i{k}", f"Movie {k}") for k in range(1, 13))
    req = request("a", ("Alien (1979)", "Brazil (1985)"), cands)
    (result,) = scorer.score([req])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    text = tokenizer.apply_chat_template(
        render_messages(req.prompt), add_generation_prompt=True, tokenize=False
    )
    prefix = tokenizer.encode(text, add_special_tokens=False) + tokenizer.encode(
        answer_prefix(result.completion), add_special_tokens=False
    )
    full = {c.label: tokenizer.encode(f"{c.label}]", add_special_tokens=False) for c in cands}

    def deciding(label: str) -> list[int]:
        t = full[label]
        others = [o for x, o in full.items() if x != label]
        return next(t[:d] for d in range(1, len(t) + 1) if all(o[:d] != t[:d] for o in others))

    # the case the shortcut must get right: C1's "]" decides it against C10..C12
    assert deciding("C1") == full["C1"] and len(deciding("C3")) < len(full["C3"])

    def next_logp(tokens: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return torch.log_softmax(model(torch.tensor([tokens])).logits[0, -1].float(), -1)

    tol = TOLERANCE[scorer.dtype] / 2
    got = {c.label: v for c, v in result.ranked}
    assert len(got) == 12 and all(math.isfinite(v) for v in got.values())
    for label, value in got.items():
        tokens = deciding(label)
        want = sum(next_logp(prefix + tokens[:k])[t].item() for k, t in enumerate(tokens))
        assert value == pytest.approx(want, abs=tol), label
    # the answer's path: at each token, no sibling is likelier beyond the tolerance
    assert result.constrained
    path = deciding(result.ranked[0][0].label)
    for k, t in enumerate(path):
        siblings = {d[k] for d in map(deciding, full) if d[:k] == path[:k] and len(d) > k}
        logp = next_logp(prefix + path[:k])
        assert logp[t].item() >= max(logp[s].item() for s in siblings) - 2 * tol, (k, t)
