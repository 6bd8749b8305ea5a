"""Does GRPO get a learning signal from this policy? Reward spread within groups, by temperature.

    python -m bench.grpo_signal --lakehouse LAKE --ds 2026-11-25 [--model champion]
        [--prompts 12] [--generations 6] [--temperatures 1.0,1.5,2.0] [--record FILE]

GRPO's advantage is a completion's reward minus its group's mean: a group whose
completions all earn the same reward contributes no gradient. The issue-15 results run
had equal rewards in 29 of 30 groups (trl's ``frac_reward_zero_std``), because the SFT
policy is nearly deterministic. This samples the GRPO training prompts (``rl_prompts``,
train split, the same seeded order as ``trainer.grpo``) from a model with the shipped
rewards (``trainer.rewards``) at each temperature, and reports the share of groups with
any spread, in the total reward and in accuracy alone, beside the mean reward: the
temperature that gives a signal without ruining the answers is the one to train with.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date

from bench import cpu_model


def group_stats(rewards: list[list[float]], accuracy: list[list[float]]) -> dict:
    """Per-temperature summary of groups of rewards (one inner list per prompt)."""
    n = len(rewards)
    return {
        "groups": n,
        "share_reward_spread": sum(max(g) > min(g) for g in rewards) / n,
        "share_accuracy_spread": sum(max(g) > min(g) for g in accuracy) / n,
        "mean_reward": statistics.fmean(r for g in rewards for r in g),
        "mean_accuracy": statistics.fmean(a for g in accuracy for a in g),
    }


def where_evidence_decides(rows: list[dict]) -> list[dict]:
    """How often the strongest and the runner-up candidate are the target, by how close
    the runner-up's evidence score is (``RecPrompt.runner_up``, in tenths): where a
    policy that picks the first listed candidate is right, and where it is a coin toss."""
    from r2rec.prompt import RecPrompt

    bins: dict[float, list[int]] = {}
    for r in rows:
        prompt = RecPrompt.from_json(r["prompt_facts"])
        order = prompt.evidence_order()
        # with fewer than two ranked, runner_up() is 0 and there is no runner-up to count
        b = bins.setdefault(
            min(int(prompt.runner_up() * 10), 9) / 10 if len(order) >= 2 else -1.0, [0, 0, 0]
        )
        b[0] += 1
        b[1] += order[:1] == [r["target_label"]]
        b[2] += order[1:2] == [r["target_label"]]
    return [
        {"runner_up_from": k, "prompts": n, "strongest_is_target": a / n,
         "runner_up_is_target": b / n}
        for k, (n, a, b) in sorted(bins.items())
    ]  # fmt: skip


def _bin(start: float) -> str:
    return "fewer than two with evidence" if start < 0 else f"{start:.1f}-{start + 0.1:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.grpo_signal", description=__doc__)
    p.add_argument("--lakehouse", required=True)
    p.add_argument("--ds", required=True)
    p.add_argument("--model", default="champion", help="a registry reference or directory")
    p.add_argument("--evidence", default="chains")
    p.add_argument("--prompts", type=int, default=12)
    p.add_argument("--generations", type=int, default=6)
    p.add_argument("--temperatures", default="1.0,1.5,2.0")
    p.add_argument("--seed", type=int, default=0, help="which prompts (trainer.grpo's order)")
    p.add_argument(
        "--min-runner-up", type=float, default=0.0,
        help="only prompts whose evidence barely decides (trainer.grpo.order_prompts)",
    )  # fmt: skip
    p.add_argument("--record", help="append the table to this Markdown file")
    args = p.parse_args(argv)
    temperatures = [float(t) for t in args.temperatures.split(",")]
    if args.prompts < 1 or args.generations < 2 or any(t <= 0 for t in temperatures):
        p.error("--prompts >= 1, --generations >= 2 and temperatures > 0")

    from vllm import SamplingParams

    from inference.engine import LLMScorer
    from r2rec.contracts import RL_PROMPTS
    from r2rec.lakehouse import Lakehouse
    from r2rec.prompt import MAX_COMPLETION_TOKENS
    from r2rec.registry import resolve_model_ref
    from trainer.grpo import order_prompts
    from trainer.rewards import REWARD_FUNCS, accuracy_reward

    lake = Lakehouse(args.lakehouse)
    ref = resolve_model_ref(lake, args.model, None, args.ds)
    rows = lake.read_arrow(
        RL_PROMPTS, partitions=[("ds", "=", args.ds), ("evidence", "=", args.evidence)]
    ).to_pylist()
    train = [r for r in rows if r["split"] == "train"]
    decides = where_evidence_decides(train)
    for line in decides:
        print(json.dumps(line), flush=True)
    rows, _ = order_prompts(train, args.seed, args.min_runner_up)
    rows = rows[: args.prompts]
    scorer = LLMScorer(ref.model, ref.adapter, registered=ref.registered)
    results = []
    for temperature in temperatures:
        params = SamplingParams(
            n=args.generations,
            temperature=temperature,
            max_tokens=MAX_COMPLETION_TOKENS,
            seed=None,  # vLLM's CPU sampler takes no per-request seed (as trainer.rollout)
        )
        start = time.perf_counter()
        outs = scorer.sample([r["prompt"] for r in rows], params)
        seconds = time.perf_counter() - start
        rewards, accuracy, tokens = [], [], 0
        for row, out in zip(rows, outs, strict=True):
            texts = [o.text for o in out.outputs]
            tokens += sum(len(o.token_ids) for o in out.outputs)
            kw = {k: [row[k]] * len(texts) for k in ("target_label", "candidate_labels",
                                                      "prompt_facts")}  # fmt: skip
            per_func = [f(texts, **kw) for f in REWARD_FUNCS]
            rewards.append([sum(parts) for parts in zip(*per_func, strict=True)])
            accuracy.append(accuracy_reward(texts, **kw))
        results.append(
            {
                "temperature": temperature,
                **group_stats(rewards, accuracy),
                "mean_completion_tokens": tokens / (len(rows) * args.generations),
                "seconds": seconds,
            }
        )
        print(json.dumps(results[-1]), flush=True)
    if args.record:
        lines = [
            f"\n### GRPO learning signal by temperature, {date.today().isoformat()}\n",
            f"`python -m bench.grpo_signal --ds {args.ds} --model {args.model} --prompts "
            f"{len(rows)} --generations {args.generations} --min-runner-up "
            f"{args.min_runner_up:g}` on "
            f"{cpu_model()}, engine dtype "
            f"{scorer.dtype}: "
            f"{len(rows)} training prompts (rl_prompts, evidence {args.evidence}) x "
            f"{args.generations} completions, rewarded by `trainer.rewards`. 'spread': share "
            "of groups whose completions do not all earn the same (GRPO learns only from "
            "those).\n",
            "| temperature | groups with reward spread | groups with accuracy spread | "
            "mean reward | mean accuracy | mean completion tokens | s |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {r['temperature']:g} | {r['share_reward_spread']:.0%} | "
                f"{r['share_accuracy_spread']:.0%} | {r['mean_reward']:.3f} | "
                f"{r['mean_accuracy']:.3f} | {r['mean_completion_tokens']:.0f} | "
                f"{r['seconds']:.0f} |"
                for r in results
            ),
            "",
        ]
        lines += [
            f"Where the evidence decides: all {len(train)} training prompts by how close the "
            "runner-up's evidence score is to the strongest's (`RecPrompt.runner_up`).\n",
            "| runner-up / strongest | prompts | strongest is the target | runner-up is |",
            "|---|---|---|---|",
            *(
                f"| {_bin(d['runner_up_from'])} | "
                f"{d['prompts']:,} | {d['strongest_is_target']:.2f} | "
                f"{d['runner_up_is_target']:.2f} |"
                for d in decides
            ),
            "",
        ]
        with open(args.record, "a") as fh:
            fh.write("\n".join(lines))
    return 0


if __name__ == "__main__":  # pragma: no cover - vLLM spawns its engine: keep the guard
    sys.exit(main())
