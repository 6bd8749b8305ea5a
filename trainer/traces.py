"""Traces job: the evidence of run date D -> reasoning traces, SFT examples and RL prompts.

    python -m trainer.traces --ds 2026-11-25 --teacher template [--evidence chains|none]
        [--max-chains N]

Reads partition D of ``samples``, ``candidates`` (the first seed of each training
sample), ``candidate_evidence`` (scope samples) and the items known by D. For every
training sample whose target a chain reaches, the teacher verbalises that chain, as the
prompt shows it, step by step (trainer.iot); the quality filter keeps the traces whose
answer is the target and that are grounded in the prompt. Writes partition (D, teacher)
of ``reasoning_traces``, (D, teacher, evidence) of ``sft_examples`` and (D, evidence) of
``rl_prompts``, so a rerun replaces exactly those.

``--evidence none`` writes the same traces' SFT examples and the RL prompts with the
paper's prompt (no evidence), for the ablation; the traces themselves are judged
against the evidence prompt either way.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass

from r2rec.catalog import ItemText, item_text, items_as_of
from r2rec.config import parse_ds
from r2rec.contracts import CANDIDATES, REASONING_TRACES, RL_PROMPTS, SAMPLES, SFT_EXAMPLES
from r2rec.errors import DataQualityError, R2RecError
from r2rec.evidence import Rows, load_evidence
from r2rec.jobs import record_metrics
from r2rec.lakehouse import Lakehouse
from r2rec.prompt import EVIDENCE_MODES, PROMPT_VERSION, RecPrompt, build_prompt, render_messages
from trainer.iot import HOPS, ChainFacts, Item, Rival, Trace, generate_traces

JOB = "traces"


@dataclass
class DateData:
    """One date's inputs, indexed for building prompts and facts."""

    items: dict[str, ItemText]
    samples: dict[str, dict]
    candidates: dict[str, dict]  # sample_id -> first-seed candidate row
    evidence: Rows  # sample_id -> item_id -> evidence row

    def item(self, item_id: str) -> ItemText:
        return item_text(self.items, item_id)

    def prompt(self, sample_id: str, mode: str) -> tuple[RecPrompt, list[str]]:
        sample, cand = self.samples[sample_id], self.candidates[sample_id]
        return build_prompt(
            sample["history"],
            cand["items"],
            cand["labels"],
            self.item,
            self.evidence.get(sample_id, {}),
            mode,
        )


def load(lakehouse: Lakehouse, ds: str) -> DateData:
    on_ds = [("ds", "=", ds)]
    samples = {
        r["sample_id"]: r for r in lakehouse.read_arrow(SAMPLES, partitions=on_ds).to_pylist()
    }
    candidates: dict[str, dict] = {}
    for row in lakehouse.read_arrow(CANDIDATES, partitions=on_ds).to_pylist():
        best = candidates.get(row["sample_id"])
        if best is None or row["seed"] < best["seed"]:
            candidates[row["sample_id"]] = row
    train = [sid for sid, s in samples.items() if s["split"] == "train" and sid in candidates]
    evidence = load_evidence(lakehouse, ds, "samples", train)
    return DateData(items_as_of(lakehouse, ds), samples, candidates, evidence)


def chain_facts(data: DateData, sample_id: str) -> ChainFacts | str:
    """The facts of the strongest chain the prompt shows to the target, or why there is none."""
    prompt, _ = data.prompt(sample_id, "chains")
    sample, cand = data.samples[sample_id], data.candidates[sample_id]
    target = cand["target_label"]
    if prompt.evidence is None or target not in prompt.evidence:
        return "no_chain_to_target"
    row = data.evidence[sample_id][cand["target_item_id"]]
    ev = prompt.evidence[target]
    history = list(sample["history"])
    i0 = row["via"][0]
    # Every text as the prompt names it: the trace must quote exactly what the model sees.
    texts = dict(prompt.candidates)
    return ChainFacts(
        prompt=prompt,
        history=tuple(Item(h, t) for h, t in zip(history, prompt.history, strict=True)),
        i0=Item(i0, ev.via[0]),
        i0_recency_rank=len(history) - history.index(i0),
        users=ev.users,
        overlap=ev.overlap,
        i1=Item(cand["target_item_id"], texts[target]),
        i1_label=target,
        i1_score=ev.score,
        rivals=tuple(
            Rival(lb, prompt.evidence[lb].users, prompt.evidence[lb].score)
            for lb in prompt.evidence_order()
            if lb != target
        ),
        candidates=tuple(
            (lb, Item(i, texts[lb])) for lb, i in zip(cand["labels"], cand["items"], strict=True)
        ),
        answer_label=target,
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


def sft_rows(ds, teacher, data, traces, chain_ids, mode: str) -> list[dict]:
    rows = []
    for t, cid in zip(traces, chain_ids, strict=True):
        if not t.passed:
            continue
        sid = cid.rsplit("/", 1)[0]
        prompt, _ = data.prompt(sid, mode)
        rows.append(
            {
                "ds": ds,
                "teacher": teacher.name,
                "evidence": mode,
                "sample_id": sid,
                "chain_id": cid,
                "prompt_version": PROMPT_VERSION,
                "prompt": render_messages(prompt),
                "completion": [{"role": "assistant", "content": t.completion}],
            }
        )
    return rows


def rl_rows(ds: str, data: DateData, mode: str) -> list[dict]:
    rows = []
    for sid, sample in sorted(data.samples.items()):
        cand = data.candidates.get(sid)
        if cand is None or sample["split"] != "train":  # GRPO trains on training samples only
            continue
        prompt, flags = data.prompt(sid, mode)
        rows.append(
            {
                "ds": ds,
                "evidence": mode,
                "sample_id": sid,
                "split": sample["split"],
                "prompt_version": PROMPT_VERSION,
                "prompt": render_messages(prompt),
                "target_label": cand["target_label"],
                "candidate_labels": cand["labels"],
                "candidate_item_ids": cand["items"],
                "prompt_facts": prompt.to_json(),
                "flags": flags,
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


def run(
    lakehouse: Lakehouse,
    ds: str,
    teacher,
    max_chains: int = 0,
    evidence: str = "chains",
) -> dict:
    ds = parse_ds(ds)
    if evidence not in EVIDENCE_MODES:
        raise R2RecError(f"--evidence must be one of {', '.join(EVIDENCE_MODES)}")
    data = load(lakehouse, ds)
    train = sorted(
        sid for sid, s in data.samples.items() if s["split"] == "train" and sid in data.candidates
    )
    keyed: list[tuple[str, ChainFacts]] = []
    skipped: Counter = Counter()
    for sid in train:
        facts = chain_facts(data, sid)
        if isinstance(facts, str):
            skipped[facts] += 1
        else:
            keyed.append((f"{sid}/1", facts))
        if max_chains and len(keyed) >= max_chains:
            break
    if not keyed:
        raise DataQualityError(
            f"traces {ds}: no training sample's target is reached by a chain; run the "
            "samples and evidence jobs first"
        )
    traces = generate_traces(keyed, teacher)
    ids = [k for k, _ in keyed]
    part = {"ds": ds, "teacher": teacher.name}
    lakehouse.overwrite(REASONING_TRACES, trace_rows(ds, teacher, traces, ids), partition=part)
    sft = sft_rows(ds, teacher, data, traces, ids, evidence)
    lakehouse.overwrite(SFT_EXAMPLES, sft, partition={**part, "evidence": evidence})
    rl = rl_rows(ds, data, evidence)
    lakehouse.overwrite(RL_PROMPTS, rl, partition={"ds": ds, "evidence": evidence})
    passed = sum(t.passed for t in traces)
    reasons = Counter(t.reject_reason for t in traces if not t.passed)
    metrics = {
        f"{teacher.name}.traces": len(traces),
        f"{teacher.name}.passed": passed,
        f"{teacher.name}.pass_rate": passed / len(traces),
        "train_samples": len(train),
        **{f"skipped.{r}": n for r, n in skipped.items()},
        f"sft_examples.{evidence}": len(sft),
        f"rl_prompts.{evidence}": len(rl),
        f"rl_prompts.{evidence}.no_evidence": sum("no_evidence" in r["flags"] for r in rl),
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
    p.add_argument(
        "--evidence", choices=EVIDENCE_MODES, default="chains",
        help="prompt of the SFT examples and RL prompts: with evidence, or the paper's",
    )  # fmt: skip
    args = p.parse_args(argv)
    return run_main(
        lambda: run(
            Lakehouse(args.lakehouse),
            args.ds,
            make_teacher(args.teacher, args.model, args.base_url),
            args.max_chains,
            args.evidence,
        ),
        job="traces",
        argv=argv,
        ds=args.ds,
        lakehouse=args.lakehouse,
    )


if __name__ == "__main__":  # pragma: no cover - vLLM spawns its engine: keep the guard
    sys.exit(main())
