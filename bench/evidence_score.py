"""Benchmark: what the evidence ranker's score is worth, against the rule it replaced.

    python -m bench.evidence_score --lakehouse DIR --ds D [--ds D2 ...] [--max-samples N]
        [--against DIR2 [--name TEXT] [--label TEXT]] [--record bench/RESULTS.md]

Reads partition D of ``candidate_evidence`` (scope samples), written by the evidence job,
and ranks every valid/test (sample, seed) of D two ways, with no LLM:

- ``score``: the evaluation's evidence ranker (``inference.prompts.EvidenceRanker``), by
  the rows' score (``spark_jobs.evidence.strength``, docs/METHOD.md §8a);
- ``summed overlap``: the first score, users x mean overlap of the same row.

Both rank exactly the same rows and break ties alike (users, then display order), so
their difference is the score alone. With ``--against DIR2`` the second ranking is
instead the evidence ranker over DIR2's ``candidate_evidence`` of the same date (an
evidence job run with other options or code on the same samples, which is checked):
two versions of the score, paired. HR@1 per split with 95% intervals over
samples (seeds of a sample averaged, as in the evaluation), and the paired difference.
The evidence job must have run with the current code: the rows carry the score.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import record_section

OLD = "summed overlap"


def summed_overlap_rankings(lakehouse, ds: str, samples: Sequence) -> list:
    """The old rule on the same rows: users x overlap, then users, then display order."""
    from inference.ranking import Ranking
    from r2rec.evidence import load_evidence

    evidence = load_evidence(lakehouse, ds, "samples", {s.sample_id for s in samples})
    out = []
    for s in samples:
        # A sample's rows cover every seed's candidates: only this list's count.
        position = {item: k for k, item in enumerate(s.candidates)}
        rows = evidence.get(s.sample_id, {})
        strength = {
            i: (r["users"] * r["overlap"], r["users"]) for i, r in rows.items() if i in position
        }
        strong = sorted(strength, key=lambda i: (-strength[i][0], -strength[i][1], position[i]))
        rest = [i for i in s.candidates if i not in strength]
        out.append(Ranking(s.sample_id, s.seed, strong + rest))
    return out


def compare(lakehouse, ds: str, max_samples: int, against=None) -> list[dict]:
    from inference import evaluate
    from inference.prompts import EvidenceRanker
    from r2rec.errors import R2RecError

    samples = evaluate.subsample(evaluate.load(lakehouse, ds).eval_samples, max_samples)
    score = EvidenceRanker(lakehouse, ds).rank(samples)
    if against is None:
        return paired_rows(ds, samples, score, summed_overlap_rankings(lakehouse, ds, samples))
    # The other lakehouse's evidence is read by these samples' ids: a sample missing there,
    # or a list that differs, would be ranked on no evidence at all.
    other = {(s.sample_id, s.seed): s for s in evaluate.load(against, ds).eval_samples}
    differ = [s.sample_id for s in samples if other.get((s.sample_id, s.seed)) != s]
    if differ:
        raise R2RecError(
            f"--against holds other samples for ds={ds} ({len(differ)} differ, e.g. "
            f"{differ[0]}): both lakehouses need the same samples and candidates"
        )
    return paired_rows(ds, samples, score, EvidenceRanker(against, ds).rank(samples))


def paired_rows(ds: str, samples: Sequence, new: Sequence, old: Sequence) -> list[dict]:
    """Per split: HR@1 of two rankings of the same samples (``new`` and ``old``, each
    with its 95% interval over samples), their paired difference, and how many samples
    each ranks better."""
    from inference.metrics import interval, paired_difference, per_sample

    by_rule = {rule: per_sample(zip(samples, r, strict=True)) for rule, r in
               (("new", new), ("old", old))}  # fmt: skip
    rows = []
    for split in sorted(by_rule["new"]):
        a, b = by_rule["new"][split], by_rule["old"][split]
        diff = paired_difference(a, b, "hr@1")
        assert diff is not None  # both ranked every sample
        row = {"ds": ds, "split": split, "samples": len(a), "diff": diff}
        for rule, values in (("new", a), ("old", b)):
            hits = [v["hr@1"] for v in values.values()]
            row[rule] = (sum(hits) / len(hits), *interval(hits))
        row["wins"] = sum(a[s]["hr@1"] > b[s]["hr@1"] for s in a)
        row["losses"] = sum(a[s]["hr@1"] < b[s]["hr@1"] for s in a)
        rows.append(row)
    return rows


def table(rows: Sequence[dict], new: str = "score", old: str = OLD) -> str:
    lines = [
        f"| ds | split | samples (x seeds) | HR@1, {new} [95% CI] | HR@1, {old} "
        "[95% CI] | difference [95% CI] | samples better / worse |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, b, (d, lo, hi, _) = r["new"], r["old"], r["diff"]
        lines.append(
            f"| {r['ds']} | {r['split']} | {r['samples']} | {a[0]:.3f} [{a[1]:.3f}, "
            f"{a[2]:.3f}] | {b[0]:.3f} [{b[1]:.3f}, {b[2]:.3f}] | {d:+.3f} "
            f"[{lo:+.3f}, {hi:+.3f}] | {r['wins']} / {r['losses']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from r2rec.config import parse_ds
    from r2rec.lakehouse import Lakehouse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lakehouse", required=True)
    p.add_argument("--ds", action="append", required=True, help="a date; repeat for more")
    p.add_argument("--max-samples", type=int, default=0, help="per split, by hash (0 = all)")
    p.add_argument("--against", help="another lakehouse: its evidence ranker, paired")
    p.add_argument("--label", default="against", help="what --against's score is called")
    p.add_argument("--name", default="score", help="what this lakehouse's score is called")
    p.add_argument("--record", help="append the table to this Markdown file")
    args = p.parse_args(argv)
    if args.max_samples < 0:
        p.error("--max-samples >= 0")
    dates = [parse_ds(d) for d in args.ds]
    lakehouse = Lakehouse(args.lakehouse)
    against = Lakehouse(args.against) if args.against else None
    rows = [row for ds in dates for row in compare(lakehouse, ds, args.max_samples, against)]
    text = table(rows, args.name, args.label if against else OLD)
    print(text)
    if args.record:
        other = f"{args.name} against {args.label}" if against else "score against summed overlap"
        vs = f" --against {Path(args.against).name}" if against else ""
        record_section(
            args.record,
            f"Evidence ranker: {other}",
            "`python -m bench.evidence_score "
            + " ".join(f"--ds {d}" for d in dates)
            + f" --max-samples {args.max_samples}{vs}` on lakehouse `{Path(args.lakehouse).name}`"
            "; the evidence ranker alone (no LLM), every seed of each valid/test sample; "
            "intervals over samples, the difference paired.\n\n" + text,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
