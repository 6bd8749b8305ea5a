"""The results table: every model of one date on the same samples, from ``eval_metrics``.

    r2rec results --ds 2026-11-25 [--subset hash-300] [--readme README.md [--block results]]

Nothing in it is typed by hand: each row is the evaluation job's seed-mean metrics with
their 95% intervals; LLM rows are named from the model registry (stage, the prompt's
evidence mode) or as the untuned base. ``--readme`` replaces the block between
``<!-- results:begin -->`` and ``<!-- results:end -->`` in that file.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

from r2rec.config import parse_ds
from r2rec.contracts import EVAL_METRICS, EVAL_OUTCOMES, MODEL_REGISTRY
from r2rec.errors import R2RecError
from r2rec.jobs import base_parser, run_main
from r2rec.lakehouse import Lakehouse


def markers(block: str) -> tuple[str, str]:
    """The comments that delimit a generated block of a Markdown file."""
    return f"<!-- {block}:begin -->", f"<!-- {block}:end -->"


BEGIN, END = markers("results")
BLOCK_NAME = re.compile(r"[a-z][a-z0-9-]{0,40}")
CLASSICAL = ("sasrec", "als", "itemknn", "popularity", "itemknn-asof", "popularity-asof",
             "evidence")  # fmt: skip
NAMES = {"evidence": "evidence ranker (no LLM)", "sasrec": "SASRec", "als": "ALS",
         "itemknn": "ItemKNN", "popularity": "popularity",
         "itemknn-asof": "ItemKNN, edges before the target only",
         "popularity-asof": "popularity, edges before the target only"}  # fmt: skip
REFERENCE = "evidence"  # what the LLM's reasoning must add to: its inputs' own order
REASONING = ("reasoning.names_top", "reasoning.grounded", "reasoning.no_repeat")


def llm_names(lakehouse: Lakehouse) -> dict[str, str]:
    """``llm:<version>`` -> a row name: the stage and evidence mode of a trained version
    (from its manifest; every run that saved it), or "untuned" for a base model some
    registered run started from."""
    if not lakehouse.exists(MODEL_REGISTRY):
        return {}
    names = {}
    # Registration order (a Delta scan's order is the files', not the rows' time).
    rows = lakehouse.read_arrow(MODEL_REGISTRY).to_pylist()
    for row in sorted(rows, key=lambda r: r["registered_at"]):
        manifest = json.loads(row["manifest"] or "{}")
        r2rec = (manifest.get("config") or {}).get("r2rec") or {}
        evidence = r2rec.get("evidence", "chains")
        stage = {"sft": "SFT", "grpo": "SFT + GRPO"}.get(row["stage"], row["stage"])
        budget = _budget(manifest)
        mode = "with evidence" if evidence == "chains" else "without evidence"
        name, key = f"{stage} {mode} ({budget})", f"llm:{row['model_version']}"
        # Runs share a version when the later one changed no weight (a GRPO run with no
        # reward spread): one model, so one row that names both runs.
        names[key] = f"{names[key]} = {name}" if key in names else name
        names.setdefault(f"llm:{row['base_version']}", f"untuned {row['base_model']}")
    return names


def _budget(manifest: dict) -> str:
    """ "1000 steps x 2 = 2000 of 6597 examples": what the run trained on, not what was
    available (a reader took "6597 examples" for the examples seen)."""
    steps = manifest.get("global_step")
    trl = (manifest.get("config") or {}).get("trl") or {}
    per_step = (trl.get("per_device_train_batch_size") or 0) * (
        trl.get("gradient_accumulation_steps") or 1
    )
    sampling = ""
    if manifest.get("stage") == "grpo" and trl.get("num_generations"):
        # A GRPO batch holds num_generations completions of each prompt. Two GRPO runs of
        # one SFT model differ mostly in how they sample, so the row says it.
        per_step //= trl["num_generations"]
        unit = "prompts"
        sampling = f", {trl['num_generations']} completions"
        if trl.get("temperature") is not None:
            sampling += f" at temperature {trl['temperature']:g}"
        weight = ((manifest.get("config") or {}).get("r2rec") or {}).get("likelihood_reward")
        if weight:
            sampling += f", target-likelihood reward x {weight:g}"
    else:
        unit = "examples"
    available = (manifest.get("inputs") or {}).get("sft_examples", {}).get("rows_used")
    where = _stopped(manifest) + _trained_on(manifest)
    if not steps or not per_step:
        return f"{steps} steps{where}"
    epochs = trl.get("num_train_epochs")
    if (trl.get("max_steps") or 0) <= 0 and epochs and available and unit == "examples":
        # Whole passes: steps x batch overstates a last, partial batch.
        passes = f"{epochs:g} epoch{'s' if epochs != 1 else ''}"
        return f"{passes} of {available} examples, {steps} steps x {per_step}{where}"
    text = f"{steps} steps x {per_step} = {steps * per_step} {unit}"
    text = text.replace(f" {unit}", f" of {available} {unit}") if available else text
    return text + sampling + where


def _stopped(manifest: dict) -> str:
    """ ", stopped at its 3600 s limit" for a run --max_train_seconds cut short: its steps
    are what it trained, fewer than it was asked for."""
    if not manifest.get("stopped_at_deadline"):
        return ""
    limit = ((manifest.get("config") or {}).get("r2rec") or {}).get("max_train_seconds")
    return f", stopped at its {limit:g} s limit" if limit else ", stopped at its time limit"


def _trained_on(manifest: dict) -> str:
    """ ", on <GPU>" for a run trained on one (trainer.offline); CPU runs say nothing, as
    every row did before GPU runs existed."""
    gpus = (manifest.get("hardware") or {}).get("gpus")
    return f", on {' + '.join(gpus)}" if gpus else ""


def _rows(lakehouse: Lakehouse, ds: str, subset: str) -> dict[str, dict]:
    if not lakehouse.exists(EVAL_METRICS):
        raise R2RecError(f"no eval_metrics: run `r2rec evaluate --ds {ds}` first")
    out: dict[str, dict] = {}
    for r in lakehouse.read_arrow(EVAL_METRICS, partitions=[("ds", "=", ds)]).to_pylist():
        if r["protocol"] == "sampled" and r["seed"] is None and r["subset"] == subset:
            out.setdefault(r["model"], {})[(r["split"], r["metric"])] = r
    if not out:
        raise R2RecError(f"no sampled metrics for ds={ds}, subset={subset}")
    return out


def paired_to_reference(
    lakehouse: Lakehouse, ds: str, subset: str, rows: dict[str, dict]
) -> dict[str, tuple[float, float, float, int]]:
    """Each model's test HR@1 minus the evidence ranker's on the same rankings, with a
    95% interval over samples: (difference, low, high, samples).

    Paired through ``eval_outcomes`` (only the rankings of the run that wrote each row),
    a sample's difference averaged over the seeds both ranked, and restricted to the
    table's subset. Two models that both follow the evidence mostly fail on the same
    samples, so this interval is far narrower than the two rows' intervals suggest.
    """
    from inference.evaluate import ALL, hashed
    from inference.metrics import interval

    subset_n = re.fullmatch(r"hash-(\d+)", subset)
    if REFERENCE not in rows or not lakehouse.exists(EVAL_OUTCOMES):
        return {}
    if subset != ALL and not subset_n:
        return {}
    run_of = {m: r[("test", "hr@1")]["run_id"] for m, r in rows.items() if ("test", "hr@1") in r}
    hits: dict[str, dict[tuple[str, int], float]] = defaultdict(dict)
    for r in lakehouse.read_arrow(EVAL_OUTCOMES, partitions=[("ds", "=", ds)]).to_pylist():
        if r["split"] == "test" and run_of.get(r["model"]) == r["run_id"]:
            hits[r["model"]][(r["sample_id"], r["seed"])] = r["hit1"]
    reference = hits.pop(REFERENCE, {})
    keep = set(hashed({sid for sid, _ in reference}, int(subset_n[1]))) if subset_n else None
    out = {}
    for model, mine in hits.items():
        per_sample: dict[str, list[float]] = defaultdict(list)
        for key in mine.keys() & reference.keys():
            if keep is None or key[0] in keep:
                per_sample[key[0]].append(mine[key] - reference[key])
        diffs = [math.fsum(d) / len(d) for d in per_sample.values()]
        if diffs:
            out[model] = (math.fsum(diffs) / len(diffs), *interval(diffs), len(diffs))
    return out


def _signed(diff: tuple[float, float, float, int] | None) -> str:
    if diff is None:
        return "—"
    return f"{diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}]"


def _cell(row: dict | None, ci: bool = False) -> str:
    if row is None:
        return "—"
    text = f"{row['value']:.3f}"
    if ci and row.get("ci_low") is not None:
        text += f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    return text


def table(lakehouse: Lakehouse, ds: str, subset: str) -> str:
    """The Markdown table: classical rows first, then the LLM rows in registration order."""
    rows, names = _rows(lakehouse, ds, subset), llm_names(lakehouse)
    order = [m for m in CLASSICAL if m in rows]
    llms = [m for m in names if m in rows and m.startswith("llm:")]
    untuned = [m for m in llms if names[m].startswith("untuned")]
    order += untuned + [m for m in llms if m not in untuned]
    order += sorted(m for m in rows if m not in order)
    paired = paired_to_reference(lakehouse, ds, subset, rows)
    head = ("model", "test HR@1 [95% CI]", "valid HR@1 [95% CI]",
            "test HR@1 - evidence ranker [95% CI, paired]", "test ValidRatio",
            "test NDCG@5", "names top", "grounded", "no repeat", "samples/split")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for model in order:
        m = rows[model]
        n = (m.get(("test", "hr@1")) or {}).get("samples")
        cells = [
            NAMES.get(model) or names.get(model) or model,
            _cell(m.get(("test", "hr@1")), ci=True),
            _cell(m.get(("valid", "hr@1")), ci=True),
            _signed(paired.get(model)),
            _cell(m.get(("test", "valid_ratio"))),
            _cell(m.get(("test", "ndcg@5"))),
            *(_cell(m.get(("test", k))) for k in REASONING),
            str(n),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"ds {ds}, sampled protocol (the target among 20 candidates), samples `{subset}` "
        f"per split, mean over {_seeds(lakehouse, ds, subset)}; 95% intervals over "
        "samples. Generated by `r2rec results` from `eval_metrics`."
    )
    return "\n".join([note, "", *lines]) + "\n"


def _seeds(lakehouse: Lakehouse, ds: str, subset: str) -> str:
    """ "3 candidate seeds (0, 1, 2)": what the rows were averaged over, read from them."""
    rows = lakehouse.read_arrow(EVAL_METRICS, partitions=[("ds", "=", ds)]).to_pylist()
    seeds = sorted({r["seed"] for r in rows if r["subset"] == subset and r["seed"] is not None})
    if not seeds:
        return "the candidate seeds"
    noun = "candidate seed" if len(seeds) == 1 else "candidate seeds"
    return f"{len(seeds)} {noun} ({', '.join(map(str, seeds))})"


def write_readme(path: Path, text: str, block: str = "results") -> None:
    """Replace what lies between ``<!-- {block}:begin -->`` and ``<!-- {block}:end -->``."""
    begin, end = markers(block)
    doc = path.read_text()
    if begin not in doc or end not in doc:
        raise R2RecError(f"{path} has no {begin} ... {end} block to replace")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text}{end}{tail}")


def main(argv: list[str] | None = None) -> int:
    p = base_parser("r2rec results", __doc__.splitlines()[0])
    p.add_argument("--subset", default="all", help="eval_metrics subset, e.g. hash-300")
    p.add_argument("--readme", help="replace the results block of this Markdown file")
    p.add_argument(
        "--block", default="results",
        help="which generated block of --readme (<!-- NAME:begin -->), e.g. results-short",
    )  # fmt: skip
    args = p.parse_args(argv)

    def body():
        ds = parse_ds(args.ds)
        if not BLOCK_NAME.fullmatch(args.block):
            raise R2RecError(
                f"--block must be lowercase letters, digits and '-', got {args.block!r}"
            )
        text = table(Lakehouse(args.lakehouse), ds, args.subset)
        if args.readme:
            write_readme(Path(args.readme), text, args.block)
        sys.stdout.write(text)

    return run_main(body, job="results", argv=argv, ds=args.ds, lakehouse=args.lakehouse)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
