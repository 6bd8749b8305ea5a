"""End to end on real MovieLens-100k: ingest -> graph -> samples -> chains -> traces -> trl.

One lakehouse for the module; the template teacher runs on every chain of a user
subsample, the vLLM teacher (tiny random model) on a few; the resulting SFT and RL
tables go into trl's trainers unchanged for one step each.
"""

from __future__ import annotations

import pytest

from r2rec.contracts import INTERACTIONS, REASONING_TRACES, RL_PROMPTS, SFT_EXAMPLES
from r2rec.lakehouse import Lakehouse

pytestmark = pytest.mark.slow
DS = "2026-11-25"


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    import pyarrow as pa
    import pyarrow.compute as pc

    from spark_jobs import chains, graph, samples
    from spark_jobs.ingest import main as ingest

    root = str(tmp_path_factory.mktemp("ml100k") / "lakehouse")
    assert ingest(["--source", "movielens-100k", "--ds", DS, "--lakehouse", root]) == 0
    lh = Lakehouse(root)
    # keep 60 users: the whole pipeline, a fraction of the time
    inter = lh.read_arrow(INTERACTIONS)
    users = sorted(set(inter["user_id"].to_pylist()), key=int)[:60]
    lh.overwrite(
        INTERACTIONS,
        inter.filter(pc.is_in(inter["user_id"], value_set=pa.array(users))),
        partition={"ds": DS, "source": "movielens-100k"},
    )
    graph.run(spark, lh, DS)
    samples.run(spark, lh, DS)
    chains.run(spark, lh, DS)
    return lh


def test_template_traces_on_ml100k(lake):
    from trainer import traces
    from trainer.teachers import TemplateTeacher

    report = traces.run(lake, DS, TemplateTeacher())
    rows = lake.read_arrow(REASONING_TRACES).to_pylist()
    assert report["template.traces"] == len(rows) >= 100
    assert report["template.pass_rate"] == 1.0  # grounded by construction
    sft = lake.read_arrow(SFT_EXAMPLES).to_pylist()
    assert len(sft) == len(rows)
    from r2rec.prompt import parse_completion

    for r in rows:
        parsed = parse_completion(r["completion"], [f"C{k}" for k in range(1, 21)])
        assert parsed.well_formed and parsed.answer == r["target_label"] == r["answer_label"]
    rl = lake.read_arrow(RL_PROMPTS).to_pylist()
    assert {r["split"] for r in rl} == {"train", "valid", "test"}


def test_sft_and_rl_tables_feed_trl_unchanged(lake, tmp_path):
    """One real SFT step and one real GRPO step on a tiny model, datasets as stored."""
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

    from r2rec.assets import smollm2_gguf
    from trainer import traces
    from trainer.teachers import TemplateTeacher

    if not lake.exists(SFT_EXAMPLES):
        traces.run(lake, DS, TemplateTeacher())
    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if tok.pad_token is None or tok.pad_token == tok.eos_token:
        tok.pad_token = "<|endoftext|>" if tok.eos_token != "<|endoftext|>" else tok.unk_token
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = LlamaForCausalLM(cfg)

    sft = Dataset.from_list(lake.read_arrow(SFT_EXAMPLES).slice(0, 8).to_pylist())
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(
            output_dir=str(tmp_path / "sft"),
            max_steps=1,
            per_device_train_batch_size=2,
            max_length=2048,  # prompts with 10 history items and 20 candidates run ~900 tokens
            report_to=[],
            bf16=False,
            use_cpu=True,
            logging_steps=1,
        ),
        train_dataset=sft,
        processing_class=tok,
    )
    assert trainer.train().global_step == 1

    rl = Dataset.from_list(lake.read_arrow(RL_PROMPTS).slice(0, 4).to_pylist())

    def answered_target(completions, target_label, **kwargs):
        return [
            float(f"[{t}]" in c[0]["content"])
            for c, t in zip(completions, target_label, strict=True)
        ]

    grpo = GRPOTrainer(
        model=model,
        reward_funcs=answered_target,
        args=GRPOConfig(
            output_dir=str(tmp_path / "grpo"),
            max_steps=1,
            per_device_train_batch_size=2,
            num_generations=2,
            max_completion_length=8,
            report_to=[],
            bf16=False,
            use_cpu=True,
            logging_steps=1,
        ),
        train_dataset=rl,
        processing_class=tok,
    )
    assert grpo.train().global_step == 1
