"""Evaluation job: classical baselines and the LLM on the valid/test samples of date D.

    python -m inference.evaluate --ds 2026-11-25
        [--models popularity,itemknn,als,sasrec,popularity-asof,itemknn-asof,evidence,llm]
        [--llm-model SPEC] [--adapter PATH] [--incumbent-of REF] [--evidence chains|none]
        [--max-samples N] [--seeds 0,1,2]

Reads partition D of ``samples``, ``candidates`` and ``graph_edges`` (and, for the
evidence ranker and the LLM, ``candidate_evidence``). Every model ranks the same
candidate lists (sampled protocol, per seed and mean over seeds, with a 95% interval
over samples); the classical baselines are also ranked over all items (full protocol).
``popularity-asof`` and ``itemknn-asof`` are popularity and ItemKNN under the LLM's
time rule: each sample sees only edges before its target (``inference/asof.py``).
``--max-samples N`` limits the LLM to the same N samples per split (a stable hash), and
every other model is then also reported on exactly those samples (subset ``hash-N``),
so the rows compare like with like; so are the subsets of earlier runs of D, so a
rerun of the baselines on every sample keeps them. Replaces the rows of (D, model) in
``eval_metrics`` and, per sample and seed, in ``eval_outcomes`` (what a paired
comparison of two models needs), so a rerun replaces exactly that model's rows, and
``reports/eval_<D>.md`` and ``.png`` under the lakehouse root (docs/METHOD.md §9).
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inference.baselines import (
    BASELINES,
    ScoreRanker,
    make_baseline,
    sequences,
    spark_for,
    training_edges,
)
from inference.metrics import (
    aggregate,
    full_metrics,
    interval,
    mean_metrics,
    per_sample,
    rank_of,
    sample_metrics,
)
from inference.ranking import EvalSample, Ranker, Ranking
from r2rec import faults
from r2rec.config import parse_ds
from r2rec.contracts import CANDIDATES, EVAL_METRICS, EVAL_OUTCOMES, GRAPH_EDGES, SAMPLES
from r2rec.errors import R2RecError
from r2rec.jobs import base_parser, record_metrics, run_main
from r2rec.lakehouse import Lakehouse
from r2rec.seeding import stable_hash

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

JOB = "evaluate"
SPLITS = ("valid", "test")
EVIDENCE_RANKER = "evidence"
# Popularity and ItemKNN under the LLM's time rule (inference/asof.py).
ASOF = ("popularity-asof", "itemknn-asof")
DEFAULT_MODELS = (*BASELINES, *ASOF, EVIDENCE_RANKER)
MODELS = (*BASELINES, *ASOF, EVIDENCE_RANKER, "llm")
FULL_K = 10
ALL = "all"


def subset_name(max_samples: int) -> str:
    """The eval_metrics ``subset`` of the LLM's samples: all, or the first N by hash."""
    return ALL if not max_samples else f"hash-{max_samples}"


@dataclass
class EvalData:
    """One date's evaluation inputs."""

    samples: list[dict]  # valid/test rows of ``samples``, by sample_id
    eval_samples: list[EvalSample]  # one per (sample, seed), by (split, sample_id, seed)
    edges: pd.DataFrame  # graph_edges of D: user_id, item_id, ts
    seeds: tuple[int, ...]


def load(lakehouse: Lakehouse, ds: str, seeds: Sequence[int] | None = None) -> EvalData:
    import pyarrow.compute as pc

    on_ds = [("ds", "=", ds)]
    # Filter in memory, not as a scan filter: Spark-written files carry no string min/max
    # stats, and delta-rs' dataset then prunes every file for a filter on a string column.
    in_splits = pc.field("split").isin(list(SPLITS))
    samples = sorted(
        lakehouse.read_arrow(SAMPLES, partitions=on_ds).filter(in_splits).to_pylist(),
        key=lambda r: r["sample_id"],
    )
    by_id = {s["sample_id"]: s for s in samples}
    cands = lakehouse.read_arrow(CANDIDATES, partitions=on_ds).filter(in_splits)
    present = sorted(set(cands["seed"].to_pylist()))
    if not samples or not present:
        raise R2RecError(f"no valid/test samples with candidates for ds={ds}: run samples first")
    wanted = tuple(seeds) if seeds else tuple(present)
    missing = sorted(set(wanted) - set(present))
    if missing:
        raise R2RecError(f"ds={ds} has no candidates for seed(s) {missing}; present: {present}")
    eval_samples = []
    for row in cands.filter(pc.field("seed").isin(list(wanted))).to_pylist():
        sample = by_id[row["sample_id"]]
        eval_samples.append(
            EvalSample(
                sample_id=row["sample_id"],
                split=row["split"],
                seed=row["seed"],
                user_id=row["user_id"],
                history=tuple(sample["history"]),
                candidates=tuple(row["items"]),
                labels=tuple(row["labels"]),
                target_item_id=row["target_item_id"],
                target_ts=sample["target_ts"],
            )
        )
    eval_samples.sort(key=lambda s: (s.split, s.sample_id, s.seed))
    edges = lakehouse.read_arrow(
        GRAPH_EDGES, partitions=on_ds, columns=["user_id", "item_id", "ts"]
    ).to_pandas()
    return EvalData(samples, eval_samples, edges, wanted)


def hashed(sample_ids: Iterable[str], n: int) -> list[str]:
    """The first ``n`` of one split's sample ids by a stable hash: subset ``hash-<n>``."""
    return sorted(set(sample_ids), key=lambda sid: (stable_hash(sid), sid))[:n]


def subsample(samples: Sequence[EvalSample], max_samples: int) -> list[EvalSample]:
    """The same ``max_samples`` samples of each split for every seed (0 = all).

    Chosen by a stable hash of the sample id, so reruns, models and seeds all see the
    same samples and a larger N only adds samples.
    """
    if not max_samples:
        return list(samples)
    keep: set[str] = set()
    for split in SPLITS:
        keep |= set(hashed({s.sample_id for s in samples if s.split == split}, max_samples))
    return [s for s in samples if s.sample_id in keep]


def check_rankings(name: str, samples: Sequence[EvalSample], rankings: Sequence[Ranking]) -> None:
    """A ranker must rank every candidate of every sample exactly once, in order."""
    if len(rankings) != len(samples):
        raise ValueError(f"{name} returned {len(rankings)} rankings for {len(samples)} samples")
    for s, r in zip(samples, rankings, strict=True):
        if (r.sample_id, r.seed) != (s.sample_id, s.seed):
            raise ValueError(f"{name}: ranking {r.sample_id}/{r.seed} out of order")
        if sorted(r.items) != sorted(s.candidates):
            raise ValueError(f"{name}: ranking of {s.sample_id}/{s.seed} is not its candidates")


def sampled_rows(
    samples: Sequence[EvalSample], rankings: Sequence[Ranking], subset: str = ALL
) -> list[dict]:
    """eval_metrics rows (without ds/model/run/detail) of the sampled protocol.

    The seed-mean rows carry a 95% interval over samples (each sample's mean over seeds).
    """
    counts: dict[tuple[str, int | None], set[str]] = {}
    for s in samples:
        counts.setdefault((s.split, s.seed), set()).add(s.sample_id)
        counts.setdefault((s.split, None), set()).add(s.sample_id)
    pairs = list(zip(samples, rankings, strict=True))
    by_sample = per_sample(pairs)
    rows = []
    for (split, seed), metrics in aggregate(pairs).items():
        n = len(counts[(split, seed)])
        for m, v in metrics.items():
            low = high = None
            if seed is None:
                low, high = interval([r[m] for r in by_sample[split].values()])
            rows.append(
                {
                    "split": split,
                    "protocol": "sampled",
                    "subset": subset,
                    "seed": seed,
                    "metric": m,
                    "value": v,
                    "ci_low": low,
                    "ci_high": high,
                    "samples": n,
                }
            )
    return rows


def outcome_rows(samples: Sequence[EvalSample], rankings: Sequence[Ranking]) -> list[dict]:
    """eval_outcomes rows (without ds/model/run): each ranking's target rank and HR@1."""
    return [
        {
            "split": s.split,
            "sample_id": s.sample_id,
            "seed": s.seed,
            "target_rank": rank_of(r.items, s.target_item_id),
            "answer_valid": r.answer_valid,
            "hit1": sample_metrics(s, r)["hr@1"],
        }
        for s, r in zip(samples, rankings, strict=True)
    ]


def reported_subsets(
    lakehouse: Lakehouse, ds: str, samples: Sequence[EvalSample], max_samples: int
) -> list[tuple[list[EvalSample], str]]:
    """The LLM subsets every model of a run is also reported on: this run's, and each
    ``hash-N`` already in ``eval_metrics`` for D.

    A rerun replaces all of a model's rows, its subset rows too, so without the earlier
    subsets a rerun of the baselines on every sample would leave an LLM evaluated on N
    samples with nothing to compare with on them.
    """
    names = {subset_name(max_samples)}
    if lakehouse.exists(EVAL_METRICS):
        table = lakehouse.read_arrow(EVAL_METRICS, partitions=[("ds", "=", ds)], columns=["subset"])
        names |= set(table.column("subset").to_pylist())
    out = []
    for name in sorted(names):
        if (m := re.fullmatch(r"hash-([0-9]+)", name)) is not None:
            subset = subsample(samples, int(m.group(1)))
            if len(subset) < len(samples):
                out.append((subset, name))
    return out


def subset_rows(
    samples: Sequence[EvalSample], rankings: Sequence[Ranking], subset: list[EvalSample], name: str
) -> list[dict]:
    """The sampled rows of a model on the LLM's subsample only (none if it is all)."""
    if name == ALL:
        return []
    keep = {(s.sample_id, s.seed) for s in subset}
    pairs = [
        (s, r) for s, r in zip(samples, rankings, strict=True) if (s.sample_id, s.seed) in keep
    ]
    return sampled_rows([s for s, _ in pairs], [r for _, r in pairs], name)


def full_rows(model: ScoreRanker, data: EvalData, k: int = FULL_K) -> list[dict]:
    """Full protocol: rank all items except those the user had before the target.

    For a valid sample that is the user's training items; for a test sample also the
    valid target (a known item, like every item the candidate sampler excludes).
    """
    seqs = sequences(data.edges)
    rows = []
    for split in SPLITS:
        samples = [s for s in data.samples if s["split"] == split]
        if not samples:
            continue
        queries = [
            (s["user_id"], s["history"], seqs[s["user_id"]][: s["position"]]) for s in samples
        ]
        tops = model.full_rank_many(queries, k)
        means = mean_metrics(
            full_metrics(top, s["target_item_id"], k) for top, s in zip(tops, samples, strict=True)
        )
        # one sample per user and split, so samples = users ranked
        rows += [
            {
                "split": split,
                "protocol": "full",
                "subset": ALL,
                "seed": None,
                "metric": m,
                "value": v,
                "ci_low": None,
                "ci_high": None,
                "samples": len(samples),
            }
            for m, v in means.items()
        ]
    return rows


def make_llm_ranker(
    lakehouse: Lakehouse, ds: str, model: str | None, adapter: str | None, evidence: str | None
):
    from inference.llm import LLMRanker  # vLLM and torch load only when the LLM is asked for
    from r2rec.registry import resolve_model_ref

    ref = resolve_model_ref(lakehouse, model, adapter, ds)
    if evidence and ref.evidence and evidence != ref.evidence:
        raise R2RecError(
            f"{model} was trained on --evidence {ref.evidence} prompts; evaluating it on "
            f"--evidence {evidence} would measure a prompt it never saw"
        )
    return LLMRanker(
        lakehouse, ds, model=ref.model, adapter=ref.adapter,
        evidence=evidence or ref.evidence or "chains", registered=ref.registered,
    )  # fmt: skip


def training_runs(lakehouse: Lakehouse, rows: Sequence[dict]) -> list[dict]:
    """Registry rows of the trained models these metrics cover (for the report's links)."""
    from r2rec.contracts import MODEL_REGISTRY

    if not lakehouse.exists(MODEL_REGISTRY):
        return []
    evaluated = {r["model"].removeprefix("llm:") for r in rows if r["model"].startswith("llm:")}
    runs = [
        r
        for r in lakehouse.read_arrow(MODEL_REGISTRY).to_pylist()
        if r["model_version"] in evaluated
    ]
    return sorted(runs, key=lambda r: r["registered_at"])


def job_suffix(model: str) -> str:
    """A model name as a ``job_metrics`` partition value (no '@', '+', '/')."""
    return re.sub(r"[^A-Za-z0-9_.:\-]", "_", model)


def _write(lakehouse, ds, name, run_id, detail, rows, seconds, outcomes) -> dict[str, Any]:
    quoted = name.replace("'", "''")
    predicate = f"ds = '{ds}' AND model = '{quoted}'"
    # Outcomes first: metrics carrying this run id imply its outcomes are written, and a
    # crash in between leaves the run ids unequal, which promotion refuses to pair.
    lakehouse.overwrite(
        EVAL_OUTCOMES,
        [{"ds": ds, "model": name, "run_id": run_id} | r for r in outcomes],
        predicate=predicate,
    )
    table = [
        {"ds": ds, "model": name, "run_id": run_id, "detail": json.dumps(detail, sort_keys=True)}
        | r
        for r in rows
    ]
    lakehouse.overwrite(EVAL_METRICS, table, predicate=predicate)
    summary = {
        f"{r['split']}.{r['protocol']}.{r['metric']}"
        + ("" if r["subset"] == ALL else f".{r['subset']}"): r["value"]
        for r in rows
        if r["seed"] is None
    }
    counts = {
        f"samples.{r['split']}": r["samples"]
        for r in rows
        if r["protocol"] == "sampled" and r["subset"] == ALL
    }
    record_metrics(
        lakehouse,
        f"{JOB}.{job_suffix(name)}",
        ds,
        {**summary, **counts, **{f"seconds.{k}": v for k, v in seconds.items()}},
    )
    faults.checkpoint("evaluate.model_written")
    return {**summary, **{f"seconds.{k}": round(v, 3) for k, v in seconds.items()}}


def run(
    spark,
    lakehouse: Lakehouse,
    ds: str,
    models: Sequence[str] = DEFAULT_MODELS,
    *,
    seeds: Sequence[int] | None = None,
    max_samples: int = 0,
    llm_model: str | None = None,
    adapter: str | None = None,
    rankers: Sequence[Ranker] = (),
    baseline_options: dict[str, Any] | None = None,
    evidence: str | None = None,
) -> dict:
    """Evaluate ``models`` (names) and ``rankers`` (ready Ranker objects, LLM-like).

    ``rankers`` and the LLM get the ``max_samples`` subsample and the sampled protocol
    only; baselines get every sample and both protocols.
    """
    from inference.report import write_report

    ds = parse_ds(ds)
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise R2RecError(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    if max_samples < 0:
        raise R2RecError("--max-samples must be >= 0 (0 = all)")
    data = load(lakehouse, ds, seeds)
    run_id = uuid.uuid4().hex
    protocol = {
        "seeds": list(data.seeds),
        "candidates": len(data.eval_samples[0].candidates),
        "splits": list(SPLITS),
    }
    results: dict[str, dict] = {}
    subset = subsample(data.eval_samples, max_samples)
    name = subset_name(max_samples) if len(subset) < len(data.eval_samples) else ALL
    reported = reported_subsets(lakehouse, ds, data.eval_samples, max_samples)

    baselines = [m for m in models if m in BASELINES]
    if baselines:
        train = training_edges(data.edges)
        all_items = sorted(set(data.edges["item_id"]))
    for model_name in baselines:
        model = make_baseline(model_name, spark, **(baseline_options or {}))
        model.fit(train, items=all_items)
        start = time.perf_counter()
        rankings = model.rank(data.eval_samples)
        rank_s = time.perf_counter() - start
        check_rankings(model_name, data.eval_samples, rankings)
        start = time.perf_counter()
        rows = sampled_rows(data.eval_samples, rankings) + full_rows(model, data)
        for sub, sub_name in reported:
            rows += subset_rows(data.eval_samples, rankings, sub, sub_name)
        full_s = time.perf_counter() - start
        seconds = {"fit": model.fit_seconds, "rank": rank_s, "full": full_s}
        detail = {
            "config": model.config(),
            "protocol": protocol,
            "train_edges": len(train),
            "full_k": FULL_K,
            "fit_seconds": model.fit_seconds,
            "rank_seconds": rank_s,
            "full_seconds": full_s,
        }
        if hasattr(model, "losses"):
            detail["train_loss"] = [round(x, 4) for x in model.losses]
        results[model_name] = _write(
            lakehouse, ds, model_name, run_id, detail, rows, seconds,
            outcome_rows(data.eval_samples, rankings),
        )  # fmt: skip

    # Every sample, like the baselines (they cost no model), on the sampled protocol only.
    sampled_only: list[Ranker] = []
    if any(m in models for m in ASOF):
        from inference.asof import ASOF_RANKERS, AudienceIndex

        audience = AudienceIndex(data.edges)
        sampled_only += [ASOF_RANKERS[m](audience) for m in ASOF if m in models]
    if EVIDENCE_RANKER in models:
        from inference.prompts import EvidenceRanker

        sampled_only.append(EvidenceRanker(lakehouse, ds))
    for ranker in sampled_only:
        start = time.perf_counter()
        rankings = ranker.rank(data.eval_samples)
        rank_s = time.perf_counter() - start
        check_rankings(ranker.name, data.eval_samples, rankings)
        rows = sampled_rows(data.eval_samples, rankings)
        for sub, sub_name in reported:
            rows += subset_rows(data.eval_samples, rankings, sub, sub_name)
        detail = {"protocol": protocol, "rank_seconds": rank_s, **ranker.detail}
        results[ranker.name] = _write(
            lakehouse, ds, ranker.name, run_id, detail, rows, {"rank": rank_s},
            outcome_rows(data.eval_samples, rankings),
        )  # fmt: skip

    others: list[Ranker] = list(rankers)
    if "llm" in models:
        others.append(make_llm_ranker(lakehouse, ds, llm_model, adapter, evidence))
    for ranker in others:
        from r2rec.prompt import PROMPT_VERSION

        start = time.perf_counter()
        rankings = ranker.rank(subset)
        rank_s = time.perf_counter() - start
        check_rankings(ranker.name, subset, rankings)
        detail = {
            "protocol": protocol,
            "max_samples": max_samples,
            "prompt_version": PROMPT_VERSION,
            "llm_model": llm_model,
            "adapter": adapter,
            "rank_seconds": rank_s,
            **(getattr(ranker, "detail", None) or {}),
        }
        rows = sampled_rows(subset, rankings, name)
        results[ranker.name] = _write(
            lakehouse, ds, ranker.name, run_id, detail, rows, {"rank": rank_s},
            outcome_rows(subset, rankings),
        )  # fmt: skip

    every_model = lakehouse.read_arrow(EVAL_METRICS, partitions=[("ds", "=", ds)]).to_pylist()
    paths = write_report(lakehouse.root, ds, every_model, training_runs(lakehouse, every_model))
    return {"ds": ds, "run_id": run_id, "models": results, **paths}


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise R2RecError(f"--seeds must be comma-separated integers, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    p = base_parser("python -m inference.evaluate", __doc__.splitlines()[0])
    p.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated, from {','.join(MODELS)}",
    )
    p.add_argument(
        "--llm-model",
        help="llm: champion, registry:<run id or version>, or a model directory "
        "(default: bundled SmolLM2)",
    )
    p.add_argument("--adapter", help="llm: LoRA adapter path")
    p.add_argument(
        "--evidence", choices=["chains", "none"],
        help="llm prompt: with evidence or the paper's (default: what the model trained on)",
    )  # fmt: skip
    p.add_argument("--max-samples", type=int, default=0, help="llm: samples per split (0 = all)")
    p.add_argument("--seeds", help="candidate seeds, comma-separated (default: all present)")
    p.add_argument(
        "--incumbent-of", metavar="REF",
        help="llm: evaluate what REF must beat to be promoted: the champion, or before the "
        "first promotion REF's untuned base (instead of --llm-model)",
    )  # fmt: skip
    p.add_argument("--sasrec-epochs", type=int, help="SASRec training epochs")
    p.add_argument("--als-rank", type=int, help="ALS factors")
    args = p.parse_args(argv)

    def body():
        from inference.baselines import ALSConfig
        from r2rec import registry

        llm_model = args.llm_model
        if args.incumbent_of:
            if args.llm_model or args.adapter:
                raise R2RecError("--incumbent-of chooses the model: give no --llm-model/--adapter")
            current = registry.champion(Lakehouse(args.lakehouse))
            # The champion is evaluated on this date's samples too: promotion pairs the
            # candidate with it sample by sample, and an older date's numbers are not that.
            llm_model = registry.CHAMPION if current else registry.BASE + args.incumbent_of

        models = [m.strip() for m in args.models.split(",") if m.strip()]
        if args.incumbent_of and "llm" not in models:
            raise R2RecError("--incumbent-of evaluates an LLM: add llm to --models")
        options: dict[str, Any] = {}
        if args.sasrec_epochs is not None:
            options["sasrec"] = {"epochs": args.sasrec_epochs}
        if args.als_rank is not None:
            options["als"] = ALSConfig(rank=args.als_rank)
        return run(
            spark_for(models),
            Lakehouse(args.lakehouse),
            args.ds,
            models,
            seeds=_ints(args.seeds) if args.seeds else None,
            max_samples=args.max_samples,
            llm_model=llm_model,
            adapter=args.adapter,
            baseline_options=options,
            evidence=args.evidence,
        )

    return run_main(body, job="evaluate", argv=argv, ds=args.ds, lakehouse=args.lakehouse)


if __name__ == "__main__":  # pragma: no cover - vLLM spawns its engine: keep the guard
    sys.exit(main())
