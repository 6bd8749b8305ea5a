"""Benchmark: nightly LLM scoring of every user, and what a shorter reasoning costs.

    python -m bench.scoring --ds 2026-11-25 --model registry:<run id> [--lakehouse L]
        [--budgets 160,64] [--max-users 0] [--record bench/RESULTS.md]

Issue 15: all 943 ML-100k users in at most 15 minutes on 2 cores, with the evidence
prompt; reasoning length is the main cost. For each reasoning budget
(``--max-new-tokens``) this runs ``inference.score --mode eval`` in its own process, as
the nightly task runs: every user's test sample (candidate seed 0, the target among 20
candidates) with the model's prompt, the reasoning, and the exact log-probabilities of
all 20 labels. Eval mode, not serve, so the published rank 1 can be checked against
the sample's target (HR@1) on the same prompts the budgets share. Per budget: users,
wall seconds (the job's ``job_runs`` row, engine start included), users/s, HR@1 with a
95% interval, the valid-answer share and the mean reasoning length in words.

Each run replaces the lakehouse's ``recommendations`` partition (ds, eval): use a
results lakehouse, not one whose eval partition matters.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench import record_section
from inference.metrics import proportion_interval

ROOT = Path(__file__).resolve().parents[1]


def score(ds: str, lakehouse: str, model: str, budget: int, max_users: int) -> dict:
    cmd = [sys.executable, "-m", "inference.score", "--ds", ds, "--lakehouse", lakehouse,
           "--mode", "eval", "--split", "test", "--seed", "0", "--model", model,
           "--max-new-tokens", str(budget), "--max-users", str(max_users),
           "--chunk-size", "128"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"scoring with --max-new-tokens {budget} failed (exit {done.returncode})")
    return json.loads([x for x in done.stdout.splitlines() if x.startswith("{")][-1])


def measure(lakehouse: str, ds: str, run_id: str) -> dict:
    """The run's time from ``job_runs`` and its accuracy from what it published."""
    from r2rec.contracts import JOB_RUNS, RECOMMENDATIONS, SAMPLES
    from r2rec.lakehouse import Lakehouse

    lake = Lakehouse(lakehouse)
    runs = [r for r in lake.read_arrow(JOB_RUNS).to_pylist()
            if r["job"] == "score" and r["status"] == "success"
            and json.loads(r["report"] or "{}").get("run_id") == run_id]  # fmt: skip
    if len(runs) != 1:
        raise SystemExit(f"expected one job_runs row for scoring run {run_id}, found {len(runs)}")
    recs = lake.read_arrow(
        RECOMMENDATIONS, partitions=[("ds", "=", ds), ("mode", "=", "eval")]
    ).to_pylist()
    top = {r["sample_id"]: r for r in recs if r["rank"] == 1}  # the partition is this run's
    targets = {
        r["sample_id"]: r["target_item_id"]
        for r in lake.read_arrow(SAMPLES, partitions=[("ds", "=", ds)]).to_pylist()
        if r["sample_id"] in top
    }
    return summarise(runs[0]["elapsed_s"], list(top.values()), targets)


def summarise(seconds: float, top: list[dict], targets: dict[str, str]) -> dict:
    n = len(top)
    if n == 0:
        raise SystemExit("the scoring run published no rank-1 rows")
    hits = sum(r["item_id"] == targets[r["sample_id"]] for r in top)
    hr = hits / n
    words = [len((r["reasoning"] or "").split()) for r in top]
    return {
        "users": n, "seconds": seconds, "users_per_s": n / seconds,
        "minutes_for_943": 943 / (n / seconds) / 60, "hr@1": hr,
        "ci": proportion_interval(hits, n),
        "valid": sum(r["answer_valid"] for r in top) / n,
        "words": sum(words) / n,
    }  # fmt: skip


def table(rows: list[tuple[int, dict]]) -> str:
    lines = [
        "| reasoning budget (tokens) | users | wall s | users/s | min for 943 users | test HR@1 "
        "[95% CI] | valid | reasoning words |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for budget, m in rows:
        lines.append(
            f"| {budget} | {m['users']} | {m['seconds']:.0f} | {m['users_per_s']:.2f} | "
            f"{m['minutes_for_943']:.1f} | {m['hr@1']:.3f} [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}] "
            f"| {m['valid']:.3f} | {m['words']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ds", required=True)
    p.add_argument("--lakehouse", default="lakehouse-results")
    p.add_argument("--model", required=True, help="champion, registry:<run id>, or a directory")
    p.add_argument("--budgets", default="160,64", help="reasoning budgets, comma-separated")
    p.add_argument("--max-users", type=int, default=0, help="0 = every user")
    p.add_argument("--record", help="append the table to this Markdown file")
    args = p.parse_args(argv)
    try:
        budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        p.error(f"--budgets: integers, comma-separated (got {args.budgets!r})")
    if not budgets or min(budgets) < 1 or args.max_users < 0:
        p.error("--budgets: one or more positive integers; --max-users >= 0")
    rows = []
    for budget in budgets:
        report = score(args.ds, args.lakehouse, args.model, budget, args.max_users)
        if report.get("skipped_chunks"):
            # Chunks committed by an earlier run were reused: the time would not be a
            # whole night's scoring.
            raise SystemExit(
                f"budget {budget}: {report['skipped_chunks']} chunk(s) came from an earlier "
                "run's score_chunks (a rerun of one model, budget and users resumes rather "
                "than scores, so it cannot be timed)"
            )
        rows.append((budget, measure(args.lakehouse, args.ds, report["run_id"])))
        print(table(rows[-1:]), flush=True)
    text = table(rows)
    print(text)
    if args.record:
        record_section(
            args.record,
            "Nightly scoring of every user",
            f"`python -m bench.scoring --ds {args.ds} --model {args.model} --budgets "
            f"{args.budgets} --max-users {args.max_users}`: `inference.score --mode eval`, "
            "test samples, candidate seed 0, the model's own prompt; wall time from "
            "`job_runs` (engine start included).\n\n" + text,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
