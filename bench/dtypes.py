"""Do float32 and bfloat16 serving agree? Greedy answers and label rankings on real prompts.

    python -m bench.dtypes --lakehouse LAKE --ds 2026-11-25 [--model champion]
        [--samples 100] [--record bench/RESULTS.md]

Scores the same protocol prompts (valid and test samples, candidate seed 0, with their
evidence) with one vLLM engine per dtype and compares, prompt by prompt: identical
completions, identical top-1 answers, the rank correlation of the 20 label
log-probabilities (Spearman), and the largest log-probability difference. Machines
differ (some CPUs have AVX512-BF16/AMX, some do not; R2REC_DTYPE picks either path), so
what changes with the dtype is measured here rather than assumed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date

from bench import cpu_model


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation of two score lists (average ranks for ties)."""

    def ranks(xs: list[float]) -> list[float]:
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        out = [0.0] * len(xs)
        k = 0
        while k < len(order):
            j = k
            while j + 1 < len(order) and xs[order[j + 1]] == xs[order[k]]:
                j += 1
            for m in range(k, j + 1):
                out[order[m]] = (k + j) / 2
            k = j + 1
        return out

    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb) if va and vb else 1.0


def compare(first: list, second: list) -> dict:
    """Agreement of two lists of Scored results of the same requests."""
    same_text = sum(a.completion == b.completion for a, b in zip(first, second, strict=True))
    same_top = sum(
        a.ranked[0][0].label == b.ranked[0][0].label for a, b in zip(first, second, strict=True)
    )
    rhos, worst = [], 0.0
    for a, b in zip(first, second, strict=True):
        sa = {c.label: v for c, v in a.ranked}
        sb = {c.label: v for c, v in b.ranked}
        labels = sorted(sa)
        rhos.append(spearman([sa[x] for x in labels], [sb[x] for x in labels]))
        if a.completion == b.completion:  # same reasoning: the label scores are comparable
            worst = max(worst, max(abs(sa[x] - sb[x]) for x in labels))
    n = len(first)
    return {
        "prompts": n,
        "identical_completions": same_text / n,
        "identical_top1": same_top / n,
        "mean_spearman": sum(rhos) / n,
        "max_logprob_diff_same_reasoning": worst,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.dtypes", description=__doc__)
    p.add_argument("--lakehouse", required=True)
    p.add_argument("--ds", required=True)
    p.add_argument("--model", default="champion", help="a model reference or directory")
    p.add_argument("--samples", type=int, default=100, help="per split (x 2 splits)")
    p.add_argument("--record", help="append the result to this Markdown file")
    args = p.parse_args(argv)

    from inference.engine import LLMScorer
    from inference.evaluate import load, subsample
    from inference.prompts import SamplePrompts
    from r2rec.assets import cpu_has_native_bf16
    from r2rec.lakehouse import Lakehouse
    from r2rec.registry import resolve_model_ref

    lake = Lakehouse(args.lakehouse)
    samples = subsample(load(lake, args.ds, [0]).eval_samples, args.samples)
    prompts = SamplePrompts(lake, args.ds)
    prompts.prepare(samples)
    requests = prompts.requests([(f"{s.sample_id}#{s.seed}", s) for s in samples])
    ref = resolve_model_ref(lake, args.model, None, args.ds)
    results, seconds = {}, {}
    for dtype in ("float32", "bfloat16"):
        scorer = LLMScorer(ref.model, ref.adapter, dtype=dtype, registered=ref.registered)
        start = time.perf_counter()
        results[dtype] = scorer.score(requests)
        seconds[dtype] = time.perf_counter() - start
        version = scorer.version
        del scorer
    report = {
        **compare(results["float32"], results["bfloat16"]),
        "model": version,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "native_bf16": cpu_has_native_bf16(),
    }
    print(json.dumps(report, indent=2))
    if args.record:
        lines = [
            f"\n### float32 against bfloat16 serving, {date.today().isoformat()}\n",
            f"`python -m bench.dtypes --ds {args.ds} --samples {args.samples}` on "
            f"{cpu_model()} (native bfloat16: "
            f"{report['native_bf16']}), model `{version}`, {report['prompts']} ML-100k "
            "protocol prompts (valid and test, seed 0, with evidence), greedy.\n",
            "| prompts | identical completions | identical top-1 answer | mean Spearman of "
            "label log-probs | max log-prob diff (same reasoning) | float32 s | bfloat16 s |",
            "|---|---|---|---|---|---|---|",
            f"| {report['prompts']} | {report['identical_completions']:.1%} | "
            f"{report['identical_top1']:.1%} | {report['mean_spearman']:.4f} | "
            f"{report['max_logprob_diff_same_reasoning']:.3f} | {seconds['float32']:.0f} | "
            f"{seconds['bfloat16']:.0f} |",
            "",
        ]
        with open(args.record, "a") as fh:
            fh.write("\n".join(lines))
    return 0


if __name__ == "__main__":  # pragma: no cover - vLLM spawns its engine: keep the guard
    sys.exit(main())
