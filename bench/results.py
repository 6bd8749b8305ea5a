"""The whole results run from an empty lakehouse: data, training, evaluation, the table.

    python -m bench.results [--lakehouse lakehouse-results] [--sft-steps 1000]
        [--grpo-steps 100] [--eval-samples 300] [--readme README.md]
        [--record bench/RESULTS.md]

(``make results``.) Runs the real jobs one after another as an operator would, each
through ``r2rec``: ingest ML-100k, graph, samples, chains, evidence, traces (with and
without evidence), the baselines and the evidence ranker, SFT with evidence, the
untuned base (unless ``--no-untuned``), the SFT model and its promotion, GRPO from it,
its evaluation and promotion (unless ``--grpo-steps 0``), then the no-evidence SFT
ablation and its evaluation (unless ``--ablation-sft-steps 0``), and finally
``r2rec results``, which writes the table from ``eval_metrics``. Every step's wall time
is recorded. A rerun resumes: finished training runs are not trained again, evaluations
already in ``eval_metrics`` for the same samples are kept.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

DS = "2026-11-25"
ROOT = Path(__file__).resolve().parents[1]
R2REC = str(Path(sys.executable).parent / "r2rec")


class Run:
    def __init__(self, lakehouse: str, log: Path):
        self.lakehouse, self.log = lakehouse, log
        self.times: list[tuple[str, float]] = []

    def job(self, name: str, *args: str) -> dict:
        """``r2rec <args> --ds DS --lakehouse L``; its JSON report."""
        cmd = [R2REC, *args, "--ds", DS, "--lakehouse", self.lakehouse]
        start = time.monotonic()
        with open(self.log, "a") as log:
            log.write(f"\n$ {' '.join(cmd)}\n")
            log.flush()
            out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
        seconds = time.monotonic() - start
        self.times.append((name, seconds))
        print(f"{name}: {seconds:.0f} s", flush=True)
        if out.returncode != 0:
            raise SystemExit(f"{name} failed (exit {out.returncode}); see {self.log}")
        lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
        return json.loads(lines[-1]) if lines else {}

    def evaluated(self, model: str, subset: str) -> bool:
        from r2rec.contracts import EVAL_METRICS
        from r2rec.lakehouse import Lakehouse

        lake = Lakehouse(self.lakehouse)
        if not lake.exists(EVAL_METRICS):
            return False
        rows = lake.read_arrow(EVAL_METRICS, partitions=[("ds", "=", DS)]).to_pylist()
        return any(r["model"] == model and r["subset"] == subset for r in rows)


def grpo(run: Run, args: argparse.Namespace, sft: dict, subset: str, llm: tuple) -> None:
    """GRPO from the SFT model, its evaluation and its promotion."""
    out = run.job(
        "GRPO", "grpo", "--config", "trainer/configs/grpo.yaml", "--max_steps",
        str(args.grpo_steps), "--save_steps", "10", "--init_adapter",
        f"registry:{sft['run_id']}",
    )  # fmt: skip
    if not run.evaluated(f"llm:{out['model_version']}", subset):
        run.job("evaluate SFT + GRPO", *llm, "--llm-model", f"registry:{out['run_id']}")
    if not args.no_untuned:
        run.job("promote GRPO", "promote", "--candidate", out["model_version"])


def ablation(run: Run, args: argparse.Namespace, subset: str, llm: tuple) -> None:
    """SFT on the paper's prompt (no evidence) and its evaluation."""
    out = run.job(
        "SFT without evidence", "sft", "--config", "trainer/configs/sft.yaml", "--max_steps",
        str(args.ablation_sft_steps), "--save_steps", "100", "--evidence", "none",
    )  # fmt: skip
    if not run.evaluated(f"llm:{out['model_version']}", subset):
        run.job("evaluate SFT without evidence", *llm, "--llm-model",
                f"registry:{out['run_id']}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.results", description=__doc__)
    p.add_argument("--lakehouse", default=str(ROOT / "lakehouse-results"))
    p.add_argument("--sft-steps", type=int, default=1000, help="x 2 examples a step")
    p.add_argument("--grpo-steps", type=int, default=100, help="0: no GRPO")
    p.add_argument(
        "--ablation-sft-steps", type=int, default=500,
        help="SFT steps of the no-evidence ablation (x 2 examples); 0: no ablation",
    )  # fmt: skip
    p.add_argument(
        "--no-untuned",
        action="store_true",
        help="skip the untuned base's evaluation (it never answers in the format), and so "
        "the SFT model's promotion, which must beat it",
    )
    p.add_argument("--eval-samples", type=int, default=300, help="per split, x 3 seeds")
    p.add_argument("--readme", help="write the table into this Markdown file's results block")
    p.add_argument("--record", help="append the step times to this Markdown file")
    args = p.parse_args(argv)
    Path(args.lakehouse).mkdir(parents=True, exist_ok=True)
    run = Run(args.lakehouse, Path(args.lakehouse) / "results.log")
    subset, n = f"hash-{args.eval_samples}", str(args.eval_samples)
    started = time.monotonic()

    run.job("ingest", "ingest", "--source", "movielens-100k")
    for job in ("graph", "samples", "chains", "evidence"):
        run.job(job, job)
    run.job("traces (evidence)", "traces", "--evidence", "chains")
    run.job("traces (no evidence)", "traces", "--evidence", "none")
    # The baselines first: minutes, and the evidence ranker is the bar the LLM must clear.
    baselines = "popularity,itemknn,als,sasrec,popularity-asof,itemknn-asof,evidence"
    if not run.evaluated("evidence", subset):
        run.job("evaluate baselines", "evaluate", "--models", baselines, "--max-samples", n)
    steps = ("--max_steps", str(args.sft_steps), "--save_steps", "100")
    sft = run.job("SFT with evidence", "sft", "--config", "trainer/configs/sft.yaml", *steps)
    llm = ("evaluate", "--models", "llm", "--max-samples", n)
    base = f"base:registry:{sft['run_id']}"
    untuned = f"llm:{sft['model_version'].split('+')[0]}"
    if not args.no_untuned and not run.evaluated(untuned, subset):
        run.job("evaluate untuned", *llm, "--llm-model", base)
    if not run.evaluated(f"llm:{sft['model_version']}", subset):
        run.job("evaluate SFT with evidence", *llm, "--llm-model", f"registry:{sft['run_id']}")
    # The first promotion must beat the untuned base on the same samples (r2rec.registry),
    # so without that evaluation there is nothing to promote against.
    if not args.no_untuned:
        run.job("promote SFT", "promote", "--candidate", sft["model_version"])
    if args.grpo_steps > 0:
        grpo(run, args, sft, subset, llm)
    # The ablation last: the claims above do not wait for it.
    if args.ablation_sft_steps > 0:
        ablation(run, args, subset, llm)
    readme = ["--readme", args.readme] if args.readme else []
    table = subprocess.run(
        [R2REC, "results", "--ds", DS, "--lakehouse", args.lakehouse, "--subset", subset,
         *readme],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    total = time.monotonic() - started
    print(table)
    print(f"total: {total / 3600:.2f} h")
    if args.record:
        lines = [
            f"\n### Results run, {date.today().isoformat()}\n",
            f"`python -m bench.results` (`make results`) on {platform.processor() or 'CPU'}, "
            f"{platform.node()}: SFT {args.sft_steps} steps x 2 examples (the no-evidence "
            f"ablation {args.ablation_sft_steps or 'not run'}), GRPO "
            f"{args.grpo_steps or 'not run'} steps, untuned base "
            f"{'not evaluated' if args.no_untuned else 'evaluated'}, "
            f"{args.eval_samples} samples per split x 3 seeds.\n",
            "| step | wall s |",
            "|---|---|",
            *(f"| {name} | {seconds:.0f} |" for name, seconds in run.times),
            f"| **total** | **{total:.0f}** ({total / 3600:.2f} h) |",
            "",
        ]
        with open(args.record, "a") as fh:
            fh.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
