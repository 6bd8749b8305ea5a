"""The whole results run from an empty lakehouse: data, training, evaluation, the table.

    python -m bench.results [--lakehouse lakehouse-results] [--sft-steps 1000]
        [--grpo-steps 100] [--eval-samples 300] [--readme README.md]
        [--record bench/RESULTS.md]

(``make results``.) Runs the real jobs one after another as an operator would, each
through ``r2rec``: ingest ML-100k, graph, samples, chains, evidence, traces (with and
without evidence), the baselines and the evidence ranker, SFT with evidence, the
untuned base (unless ``--no-untuned``), the SFT model and its promotion, GRPO from it,
its evaluation and promotion (unless ``--grpo-steps 0``; with ``--grpo-likelihood W`` a
second GRPO run adds the target-likelihood reward at weight W), then the no-evidence SFT
ablation and its evaluation (unless ``--ablation-sft-steps 0``), and finally
``r2rec results``, which writes the table from ``eval_metrics``. Every step's wall time
is recorded, in the lakehouse's ``results_times.jsonl`` too: a run stopped and resumed
over several calls (hours of training on two cores) reports each step's time summed over
every call, the interrupted attempts included. A rerun on the same lakehouse resumes:
the data jobs that succeeded there are kept (until one has to run again, after which
every later one runs), so the training inputs keep their versions and finished training
runs are not trained again; evaluations already in ``eval_metrics`` for the same samples
and promotions already made are kept too.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

from bench import machine

DS = "2026-11-25"
ROOT = Path(__file__).resolve().parents[1]
R2REC = str(Path(sys.executable).parent / "r2rec")


class Run:
    def __init__(self, lakehouse: str, log: Path):
        self.lakehouse, self.log = lakehouse, log
        self.times: list[tuple[str, float | None]] = []  # None: done by an earlier call
        self.rerun = False  # a data job ran in this call: every later one must run too
        self.ledger = Path(lakehouse) / "results_times.jsonl"
        self.call = datetime.now(UTC).isoformat(timespec="seconds")

    def write_time(self, name: str, seconds: float | None, outcome: str) -> None:
        """One attempt of a step: ``done``, ``failed`` or ``interrupted`` (stopped, and so
        resumed by a later call)."""
        row = {"step": name, "seconds": seconds, "outcome": outcome, "call": self.call}
        with open(self.ledger, "a") as fh:
            fh.write(json.dumps(row) + "\n")

    def all_calls(self) -> dict[str, tuple[float, int, bool]]:
        """Per step, over every call on this lakehouse: (seconds, attempts, whether an
        attempt's time is unknown)."""
        steps: dict[str, tuple[float, int, bool]] = {}
        if self.ledger.exists():
            for line in self.ledger.read_text().splitlines():
                row = json.loads(line)
                s, n, unknown = steps.get(row["step"], (0.0, 0, False))
                known = row["seconds"] is not None
                steps[row["step"]] = (s + (row["seconds"] or 0.0), n + 1, unknown or not known)
        return steps

    def succeeded(self, *args: str) -> bool:
        """Whether ``r2rec <args>`` already succeeded for DS in this lakehouse (its
        ``job_runs`` row: the same job, the same options)."""
        from r2rec.lakehouse import Lakehouse

        lake = Lakehouse(self.lakehouse)
        if not lake.exists("job_runs"):
            return False
        config = json.dumps([*args[1:], "--ds", DS, "--lakehouse", self.lakehouse])
        rows = lake.read_arrow("job_runs", partitions=[("ds", "=", DS)]).to_pylist()
        return any(
            r["job"] == args[0] and r["status"] == "success" and r["config"] == config for r in rows
        )

    def data_job(self, name: str, *args: str) -> None:
        """A data job, skipped where an earlier call of this run already made it and no
        job before it ran again: a rerun would write new table versions, and so change
        the training inputs' fingerprint and retrain every model."""
        if not self.rerun and self.succeeded(*args):
            self.kept(name)
            return
        self.rerun = True
        self.job(name, *args)

    def kept(self, name: str) -> None:
        self.times.append((name, None))
        print(f"{name}: done by an earlier call, kept", flush=True)

    def job(self, name: str, *args: str) -> dict:
        """``r2rec <args> --ds DS --lakehouse L``; its JSON report."""
        cmd = [R2REC, *args, "--ds", DS, "--lakehouse", self.lakehouse]
        start, outcome = time.monotonic(), "interrupted"
        try:
            with open(self.log, "a") as log:
                log.write(f"\n$ {' '.join(cmd)}\n")
                log.flush()
                out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
            outcome = "done" if out.returncode == 0 else "failed"
        finally:
            seconds = time.monotonic() - start
            self.write_time(name, seconds, outcome)
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


def evaluate(run: Run, name: str, model: str, subset: str, *args: str) -> None:
    """An evaluation, kept where ``eval_metrics`` already has this model on these samples."""
    if run.evaluated(model, subset):
        run.kept(name)
    else:
        run.job(name, *args)


def promote(run: Run, name: str, version: str) -> None:
    """Promotion once per version: once it is the champion, another call would compare
    it with itself."""
    if run.succeeded("promote", "--candidate", version):
        run.kept(name)
    else:
        run.job(name, "promote", "--candidate", version)


def grpo(run: Run, args: argparse.Namespace, sft: dict, subset: str, llm: tuple,
         likelihood: float = 0.0) -> None:  # fmt: skip
    """GRPO from the SFT model (with the target-likelihood reward at that weight, if
    any), its evaluation and its promotion."""
    name, extra = "GRPO", []
    if likelihood:
        name, extra = (
            f"GRPO + likelihood x {likelihood:g}",
            ["--likelihood_reward", f"{likelihood:g}"],
        )
    out = run.job(
        name, "grpo", "--config", "trainer/configs/grpo.yaml", "--max_steps",
        str(args.grpo_steps), "--save_steps", "10", "--init_adapter",
        f"registry:{sft['run_id']}", *extra,
    )  # fmt: skip
    evaluate(run, f"evaluate SFT + {name}", f"llm:{out['model_version']}", subset,
             *llm, "--llm-model", f"registry:{out['run_id']}")  # fmt: skip
    if not args.no_untuned:
        promote(run, f"promote {name}", out["model_version"])


def ablation(run: Run, args: argparse.Namespace, subset: str, llm: tuple) -> None:
    """SFT on the paper's prompt (no evidence) and its evaluation."""
    out = run.job(
        "SFT without evidence", "sft", "--config", "trainer/configs/sft.yaml", "--max_steps",
        str(args.ablation_sft_steps), "--save_steps", "100", "--evidence", "none",
    )  # fmt: skip
    evaluate(run, "evaluate SFT without evidence", f"llm:{out['model_version']}", subset,
             *llm, "--llm-model", f"registry:{out['run_id']}")  # fmt: skip


def stop_on_sigterm() -> None:
    """SIGTERM (``kill``, a scheduler's stop) as an exit, so that the step under way still
    writes its time (``Run.job``'s finally); its child is killed with it, and the next
    call resumes."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def record(run: Run, args: argparse.Namespace, total: float) -> str:
    """The Markdown section of this run's wall times: this call's, and every call's on
    this lakehouse (a run resumed after a stop has spent the sum)."""
    every = run.all_calls()
    rows, whole, unknown = [], 0.0, False
    for name, t in run.times:
        s, n, lost = every.get(name, (0.0, 0, False))
        whole, unknown = whole + s, unknown or lost
        here = "done by an earlier call" if t is None else f"{t:.0f}"
        calls = f" ({n} calls)" if n > 1 else ""
        mark = " + an attempt not timed" if lost else ""
        rows.append(f"| {name} | {here} | {s:.0f}{calls}{mark} |")
    return "\n".join([
        f"\n### Results run, {date.today().isoformat()}\n",
        # The machine as every bench section gives it: platform.processor() is empty on
        # Linux, and the host name ("vm") told a reader nothing.
        f"`python -m bench.results` (`make results`) on {machine()}: SFT {args.sft_steps} "
        "steps x 2 examples (the no-evidence "
        f"ablation {args.ablation_sft_steps or 'not run'}), GRPO "
        f"{args.grpo_steps or 'not run'} steps, untuned base "
        f"{'not evaluated' if args.no_untuned else 'evaluated'}, "
        f"{args.eval_samples} samples per split x 3 seeds. Every call's time is the sum "
        "over the calls on this lakehouse that ran the step, the stopped ones included "
        f"(`{run.ledger.name}`).\n",
        "| step | wall s, this call | wall s, every call |",
        "|---|---|---|",
        *rows,
        f"| **total** | **{total:.0f}** ({total / 3600:.2f} h) | **{whole:.0f}** "
        f"({whole / 3600:.2f} h{'; at least' if unknown else ''}) |",
        "",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.results", description=__doc__)
    p.add_argument("--lakehouse", default=str(ROOT / "lakehouse-results"))
    p.add_argument("--sft-steps", type=int, default=1000, help="x 2 examples a step")
    p.add_argument("--grpo-steps", type=int, default=100, help="0: no GRPO")
    p.add_argument(
        "--grpo-likelihood", type=float, default=0.0,
        help="also a GRPO run with the target-likelihood reward at this weight (0: not)",
    )  # fmt: skip
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
    stop_on_sigterm()
    Path(args.lakehouse).mkdir(parents=True, exist_ok=True)
    run = Run(args.lakehouse, Path(args.lakehouse) / "results.log")
    subset, n = f"hash-{args.eval_samples}", str(args.eval_samples)
    started = time.monotonic()

    run.data_job("ingest", "ingest", "--source", "movielens-100k")
    for job in ("graph", "samples", "chains", "evidence"):
        run.data_job(job, job)
    run.data_job("traces (evidence)", "traces", "--evidence", "chains")
    run.data_job("traces (no evidence)", "traces", "--evidence", "none")
    # The baselines first: minutes, and the evidence ranker is the bar the LLM must clear.
    baselines = "popularity,itemknn,als,sasrec,popularity-asof,itemknn-asof,evidence"
    evaluate(run, "evaluate baselines", "evidence", subset,
             "evaluate", "--models", baselines, "--max-samples", n)  # fmt: skip
    steps = ("--max_steps", str(args.sft_steps), "--save_steps", "100")
    sft = run.job("SFT with evidence", "sft", "--config", "trainer/configs/sft.yaml", *steps)
    llm = ("evaluate", "--models", "llm", "--max-samples", n)
    base = f"base:registry:{sft['run_id']}"
    untuned = f"llm:{sft['model_version'].split('+')[0]}"
    if not args.no_untuned:
        evaluate(run, "evaluate untuned", untuned, subset, *llm, "--llm-model", base)
    evaluate(run, "evaluate SFT with evidence", f"llm:{sft['model_version']}", subset,
             *llm, "--llm-model", f"registry:{sft['run_id']}")  # fmt: skip
    # The first promotion must beat the untuned base on the same samples (r2rec.registry),
    # so without that evaluation there is nothing to promote against.
    if not args.no_untuned:
        promote(run, "promote SFT", sft["model_version"])
    if args.grpo_steps > 0:
        grpo(run, args, sft, subset, llm)
        if args.grpo_likelihood > 0:
            grpo(run, args, sft, subset, llm, args.grpo_likelihood)
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
        with open(args.record, "a") as fh:
            fh.write(record(run, args, total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
