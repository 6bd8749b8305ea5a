"""Traces job: chains of run date D -> reasoning traces, SFT examples and RL prompts.

    python -m trainer.traces --ds 2026-11-25 --teacher template [--max-chains N]

Reads partition D of ``samples``, ``candidates``, ``chains`` and ``graph_edges`` and the
items known by D; writes partition (D, teacher) of ``reasoning_traces`` and
``sft_examples`` and partition D of ``rl_prompts``, so a rerun replaces exactly D.
The data of one date goes through the driver as Arrow (tens of thousands of chains on
MovieLens); the teacher, not the data handling, is the cost that matters here.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass

from r2rec.catalog import items_as_of
from r2rec.config import parse_ds
from r2rec.contracts import (
    CANDIDATES,
    CHAINS,
    GRAPH_EDGES,
    REASONING_TRACES,
    RL_PROMPTS,
    SAMPLES,
    SFT_EXAMPLES,
)
from r2rec.errors import DataQualityError, R2RecError
from r2rec.jobs import record_metrics
from r2rec.lakehouse import Lakehouse
from r2rec.prompt import PROMPT_VERSION, RecPrompt, render_messages
from trainer.iot import HOPS, ChainFacts, Item, Trace, generate_traces

JOB = "traces"


@dataclass
class DateData:
    """One date's inputs, indexed for building facts and prompts."""

    items: dict[str, Item]
    samples: dict[str, dict]
    candidates: dict[str, dict]  # sample_id -> first-seed candidate row
    chains: list[dict]
    edge_ts: dict[tuple[str, str], object]  # (user, item) -> first interaction time


def load(lakehouse: Lakehouse, ds: str) -> DateData:
    on_ds = [("ds", "=", ds)]
    items = {k: Item(v.item_id, v.text, v.genres) for k, v in items_as_of(lakehouse, ds).items()}
    samples = {
        r["sample_id"]: r for r in lakehouse.read_arrow(SAMPLES, partitions=on_ds).to_pylist()
    }
    candidates: dict[str, dict] = {}
    for row in lakehouse.read_arrow(CANDIDATES, partitions=on_ds).to_pylist():
        best = candidates.get(row["sample_id"])
        if best is None or row["seed"] < best["seed"]:
            candidates[row["sample_id"]] = row
    chains = sorted(
        lakehouse.read_arrow(CHAINS, partitions=on_ds).to_pylist(), key=lambda r: r["chain_id"]
    )
    edges = lakehouse.read_arrow(
        GRAPH_EDGES, partitions=on_ds, columns=["user_id", "item_id", "ts"]
    )
    edge_ts = dict(
        zip(
            zip(edges["user_id"].to_pylist(), edges["item_id"].to_pylist(), strict=True),
            edges["ts"].to_pylist(),
            strict=True,
        )
    )
    return DateData(items, samples, candidates, chains, edge_ts)


def item(data: DateData, item_id: str) -> Item:
    # An item with interactions but no metadata row still gets a citable text.
    return data.items.get(item_id) or Item(item_id, f"item {item_id}")


def chain_facts(data: DateData, chain: dict) -> ChainFacts | None:
    sample = data.samples[chain["sample_id"]]
    cand = data.candidates.get(chain["sample_id"])
    if cand is None:  # quarantined for too few negatives: no prompt to teach
        return None
    history = sample["history"]
    # A shared item other than i0 that u1 had before the target: the closure's evidence.
    shared = next(
        (
            h
            for h in reversed(history)
            if h != chain["i0"]
            and (ts := data.edge_ts.get((chain["u1"], h))) is not None
            and ts < chain["target_ts"]
        ),
        None,
    )
    return ChainFacts(
        history=tuple(item(data, h) for h in history),
        i0=item(data, chain["i0"]),
        i1=item(data, chain["i1"]),
        overlap=chain["overlap"],
        shared_example=item(data, shared) if shared else None,
        i0_recency_rank=len(history) - history.index(chain["i0"]),
        candidates=tuple(zip(cand["labels"], (item(data, i) for i in cand["items"]), strict=True)),
        answer_label=cand["target_label"],
    )


def rec_prompt(data: DateData, sample: dict, cand: dict) -> RecPrompt:
    return RecPrompt(
        history=[item(data, h).text for h in sample["history"]],
        candidates=[
            (lb, item(data, i).text) for lb, i in zip(cand["labels"], cand["items"], strict=True)
        ],
    )


def trace_rows(ds: str, teacher, traces: list[Trace], chain_ids: list[str]) -> list[dict]:
    return [
        {
            "ds": ds,
            "teacher": teacher.name,
            "sample_id": cid.rsplit("/", 1)[0],
            "chain_id": cid,
            "model": teacher.model,
            "prompt_version": PROMPT_VERSION,
            "hops": list(HOPS[: len(t.thoughts)]),
            "thoughts": t.thoughts,
            "completion": t.completion,
            "answer_label": t.answer_label,
            "target_label": t.facts.answer_label,
            "passed": t.passed,
            "reject_reason": t.reject_reason,
        }
        for t, cid in zip(traces, chain_ids, strict=True)
    ]


def sft_rows(
    ds: str, teacher, data: DateData, traces: list[Trace], chain_ids: list[str]
) -> list[dict]:
    rows = []
    for t, cid in zip(traces, chain_ids, strict=True):
        if not t.passed:
            continue
        sid = cid.rsplit("/", 1)[0]
        prompt = rec_prompt(data, data.samples[sid], data.candidates[sid])
        rows.append(
            {
                "ds": ds,
                "teacher": teacher.name,
                "sample_id": sid,
                "chain_id": cid,
                "prompt_version": PROMPT_VERSION,
                "prompt": render_messages(prompt),
                "completion": [{"role": "assistant", "content": t.completion}],
            }
        )
    return rows


def rl_rows(ds: str, data: DateData) -> list[dict]:
    rows = []
    for sid, sample in sorted(data.samples.items()):
        cand = data.candidates.get(sid)
        if cand is None:
            continue
        prompt = rec_prompt(data, sample, cand)
        rows.append(
            {
                "ds": ds,
                "sample_id": sid,
                "split": sample["split"],
                "prompt_version": PROMPT_VERSION,
                "prompt": render_messages(prompt),
                "target_label": cand["target_label"],
                "candidate_labels": cand["labels"],
                "candidate_item_ids": cand["items"],
                "grounding_items": sorted(set(prompt.history) | {t for _, t in prompt.candidates}),
            }
        )
    return rows


def make_teacher(name: str, model: str | None = None, base_url: str | None = None):
    from trainer import teachers

    if name == "template":
        return teachers.TemplateTeacher()
    if name == "vllm":
        return teachers.VLLMTeacher(model)
    if name == "openai":
        if not model or not base_url:
            raise R2RecError("the openai teacher needs --model and --base-url")
        return teachers.OpenAITeacher(model, base_url)
    raise R2RecError(f"unknown teacher '{name}' (known: template, vllm, openai)")


def run(lakehouse: Lakehouse, ds: str, teacher, max_chains: int = 0) -> dict:
    ds = parse_ds(ds)
    data = load(lakehouse, ds)
    chains = data.chains[:max_chains] if max_chains else data.chains
    keyed: list[tuple[str, ChainFacts]] = []
    for chain in chains:
        facts = chain_facts(data, chain)
        if facts is not None:
            keyed.append((chain["chain_id"], facts))
    if not keyed:
        raise DataQualityError(f"traces {ds}: no chains with candidates for {ds}; run chains first")
    traces = generate_traces(keyed, teacher)
    ids = [k for k, _ in keyed]
    part = {"ds": ds, "teacher": teacher.name}
    lakehouse.overwrite(REASONING_TRACES, trace_rows(ds, teacher, traces, ids), partition=part)
    sft = sft_rows(ds, teacher, data, traces, ids)
    lakehouse.overwrite(SFT_EXAMPLES, sft, partition=part)
    rl = rl_rows(ds, data)
    lakehouse.overwrite(RL_PROMPTS, rl, partition={"ds": ds})
    passed = sum(t.passed for t in traces)
    reasons = Counter(t.reject_reason for t in traces if not t.passed)
    metrics = {
        f"{teacher.name}.traces": len(traces),
        f"{teacher.name}.passed": passed,
        f"{teacher.name}.pass_rate": passed / len(traces),
        "sft_examples": len(sft),
        "rl_prompts": len(rl),
        **{f"{teacher.name}.rejected.{r}": n for r, n in reasons.items()},
    }
    job = f"{JOB}.{teacher.name}"  # teachers of one date keep separate metrics
    record_metrics(lakehouse, job, ds, metrics)
    return {"ds": ds, "teacher": teacher.name, "model": teacher.model, **metrics}


def main(argv: list[str] | None = None) -> int:
    from r2rec.jobs import base_parser, run_main

    p = base_parser("python -m trainer.traces", __doc__.splitlines()[0])
    p.add_argument("--teacher", default="template", choices=["template", "vllm", "openai"])
    p.add_argument("--model", help="LLM teachers: model (vllm default: bundled SmolLM2-135M)")
    p.add_argument("--base-url", help="openai teacher: endpoint, e.g. http://host:8000/v1")
    p.add_argument("--max-chains", type=int, default=0, help="only the first N chains (0 = all)")
    args = p.parse_args(argv)
    return run_main(
        lambda: run(
            Lakehouse(args.lakehouse),
            args.ds,
            make_teacher(args.teacher, args.model, args.base_url),
            args.max_chains,
        )
    )


if __name__ == "__main__":  # pragma: no cover - vLLM spawns its engine: keep the guard
    sys.exit(main())
