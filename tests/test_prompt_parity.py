"""One sample, one prompt: training, nightly scoring and evaluation render it identically.

A prompt rendered one way in training and another way in production is the most
expensive silent bug this system can have. Here the same samples go through the traces
job (the SFT examples and RL prompts it writes), the scoring job's loader and the
evaluation's prompt builder, with and without evidence, and every rendering must match
to the character.
"""

from __future__ import annotations

import pytest

from inference import score
from inference.prompts import SamplePrompts
from inference.ranking import EvalSample
from r2rec.contracts import CANDIDATES, RL_PROMPTS, SAMPLES, SFT_EXAMPLES
from r2rec.prompt import render_messages
from tests.trainer.test_traces import DS, lake  # noqa: F401 - the fixture
from trainer import traces
from trainer.teachers import TemplateTeacher


@pytest.mark.parametrize("mode", ["chains", "none"])
def test_training_scoring_and_evaluation_render_the_same_prompt(lake, mode):  # noqa: F811
    traces.run(lake, DS, TemplateTeacher(), evidence=mode)
    written = {
        r["sample_id"]: r["prompt"]
        for r in lake.read_arrow(RL_PROMPTS, partitions=[("evidence", "=", mode)]).to_pylist()
    }
    for row in lake.read_arrow(SFT_EXAMPLES, partitions=[("evidence", "=", mode)]).to_pylist():
        assert row["prompt"] == written[row["sample_id"]]  # SFT and RL prompts agree

    samples = {s["sample_id"]: s for s in lake.read_arrow(SAMPLES).to_pylist()}
    cands = [c for c in lake.read_arrow(CANDIDATES).to_pylist() if c["split"] == "train"]
    # Scoring's loader (eval mode reads one split and seed; here the training split).
    work = score.load_work(lake, DS, "eval", split="train", seed=0, evidence=mode)
    scored = {w.sample_id: render_messages(w.request.prompt) for w in work}
    # Evaluation's builder, for the same samples as EvalSamples.
    prompts = SamplePrompts(lake, DS, mode)
    evals = [
        EvalSample(c["sample_id"], "train", c["seed"], c["user_id"],
                   tuple(samples[c["sample_id"]]["history"]), tuple(c["items"]),
                   tuple(c["labels"]), c["target_item_id"])
        for c in cands
    ]  # fmt: skip
    prompts.prepare(evals)
    evaluated = {
        s.sample_id: render_messages(r.prompt)
        for s, r in zip(evals, prompts.requests([(s.sample_id, s) for s in evals]), strict=True)
    }
    assert set(written) == set(scored) == set(evaluated) == {"u0:2", "u2:2", "u3:1"}
    for sid, prompt in written.items():
        assert scored[sid] == prompt == evaluated[sid], sid
    if mode == "chains":  # the comparison covers evidence lines, not only history
        assert "Candidates by evidence" in written["u0:2"][1]["content"]


def test_every_job_takes_the_prompt_shape_from_the_core():
    """Changing ``r2rec.prompt.SHAPE`` changes what every job builds: the samples'
    history and candidates, the retrieval's, their labels and the engines' context. Run
    in a fresh interpreter with another shape, so no module default can hide a literal."""
    import json
    import subprocess
    import sys

    code = """
import json
import r2rec.prompt as p
p.SHAPE = p.PromptShape(history_len=7, candidates=9, label_prefix="X", max_model_len=999)
from r2rec.assets import vllm_engine_args
from spark_jobs.params import CandidateParams, SampleParams
from spark_jobs.retrieval import RetrievalParams
print(json.dumps([SampleParams().history_len, CandidateParams().n, RetrievalParams().n,
                  RetrievalParams().history_len, p.candidate_labels(2),
                  vllm_engine_args()["max_model_len"]]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == [7, 9, 9, 7, ["X1", "X2"], 999]
