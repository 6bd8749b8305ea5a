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

Memory: the inputs stay Arrow columns, and the training samples are taken ``CHUNK`` at
a time (their prompts, facts, traces and rows in Python). Each chunk's rows are spooled
to temporary Parquet files (under ``$TMPDIR``, about the size of the rows written) that
stream into Delta, one commit per table. Before, a date's rows sat in Python together:
1.4 GB at ML-100k's 17.6k traces, linear in the date's samples (bench/RESULTS.md, "The
traces job in chunks").
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from r2rec.catalog import ItemText, item_text, items_as_of
from r2rec.config import parse_ds
from r2rec.contracts import CANDIDATES, REASONING_TRACES, RL_PROMPTS, SAMPLES, SFT_EXAMPLES
from r2rec.errors import DataQualityError, R2RecError
from r2rec.evidence import Rows, evidence_rows, evidence_table
from r2rec.jobs import record_metrics
from r2rec.lakehouse import Lakehouse, Spool
from r2rec.prompt import EVIDENCE_MODES, PROMPT_VERSION, RecPrompt, build_prompt, render_messages
from trainer.iot import HOPS, ChainFacts, Item, Rival, Trace, generate_traces

JOB = "traces"
CHUNK = 2048  # training samples in Python at once


@dataclass
class DateData:
    """Training samples of one date (or a chunk of them), indexed for prompts and facts."""

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


class DateInputs:
    """A date's training samples (those with candidates), their first-seed candidates
    and their evidence, as Arrow tables sorted by sample id: the Python rows of a chunk
    are made when it is asked for."""

    def __init__(self, lakehouse: Lakehouse, ds: str):
        import pyarrow.compute as pc

        on_ds = [("ds", "=", ds)]
        samples = lakehouse.read_arrow(SAMPLES, partitions=on_ds)
        samples = samples.filter(pc.equal(samples["split"], "train"))
        cands = lakehouse.read_arrow(CANDIDATES, partitions=on_ds)
        cands = _first_per_sample(
            cands.filter(pc.is_in(cands["sample_id"], value_set=_ids(samples)))
        )
        samples = samples.filter(pc.is_in(samples["sample_id"], value_set=_ids(cands)))
        self.samples = samples.sort_by("sample_id")
        self.candidates = cands  # sorted by sample id, one row each: aligned with samples
        if not self.samples["sample_id"].equals(self.candidates["sample_id"]):
            raise DataQualityError(f"traces {ds}: a training sample has two sample rows")
        self.evidence = evidence_table(lakehouse, ds, "samples", self.samples["sample_id"])
        self.items = items_as_of(lakehouse, ds)

    def __len__(self) -> int:
        return len(self.samples)

    def chunks(self, size: int = CHUNK) -> Iterator[DateData]:
        ids = self.evidence["context_id"]
        at = 0  # the evidence is sorted the same way: each chunk's rows follow the last's
        for start in range(0, len(self.samples), size):
            samples = self.samples.slice(start, size).to_pylist()
            cands = self.candidates.slice(start, size).to_pylist()
            end = _bisect_right(ids, samples[-1]["sample_id"], at)
            evidence = evidence_rows(self.evidence.slice(at, end - at))
            at = end
            yield DateData(
                self.items,
                {s["sample_id"]: s for s in samples},
                {c["sample_id"]: c for c in cands},
                evidence,
            )


def _ids(table):
    return table["sample_id"].combine_chunks()


def _first_per_sample(cands):
    """Each sample's candidate row of the lowest seed, sorted by sample id."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cands = cands.sort_by([("sample_id", "ascending"), ("seed", "ascending")])
    ids = cands["sample_id"]
    if len(ids) < 2:
        return cands
    first = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))
    return cands.filter(pa.concat_arrays([pa.array([True]), *first.chunks]))


def _bisect_right(sorted_ids, value: str, lo: int) -> int:
    """The first index from ``lo`` whose id is above ``value`` (Arrow has no search for
    strings; a chunk needs a few dozen lookups, not a pass over the column)."""
    hi = len(sorted_ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_ids[mid].as_py() <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo


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
    for sid, sample in sorted(data.samples.items()):  # training samples only (DateInputs)
        cand = data.candidates[sid]
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
    chunk: int = CHUNK,
) -> dict:
    from r2rec.progress import Progress

    ds = parse_ds(ds)
    if evidence not in EVIDENCE_MODES:
        raise R2RecError(f"--evidence must be one of {', '.join(EVIDENCE_MODES)}")
    inputs = DateInputs(lakehouse, ds)
    n_traces, passed, n_sft, n_rl, no_evidence = 0, 0, 0, 0, 0
    skipped: Counter = Counter()
    reasons: Counter = Counter()
    with tempfile.TemporaryDirectory(prefix="r2rec-traces-") as tmp:
        spools = {
            t.name: Spool(t, f"{tmp}/{t.name}.parquet")
            for t in (REASONING_TRACES, SFT_EXAMPLES, RL_PROMPTS)
        }
        steps = len(HOPS) * len(inputs)  # a sample without a chain counts its steps at once
        with Progress(f"traces teacher={teacher.name}", steps, "steps") as progress:
            for data in inputs.chunks(chunk):
                keyed: list[tuple[str, ChainFacts]] = []
                for sid in sorted(data.samples):
                    facts = None if max_chains and n_traces + len(keyed) >= max_chains else (
                        chain_facts(data, sid)
                    )  # fmt: skip
                    if isinstance(facts, ChainFacts):
                        keyed.append((f"{sid}/1", facts))
                        continue
                    if facts is not None:
                        skipped[facts] += 1
                    progress.advance(len(HOPS))
                traces = generate_traces(keyed, teacher, progress) if keyed else []
                ids = [k for k, _ in keyed]
                spools[REASONING_TRACES.name].add(trace_rows(ds, teacher, traces, ids))
                sft = sft_rows(ds, teacher, data, traces, ids, evidence)
                spools[SFT_EXAMPLES.name].add(sft)
                rl = rl_rows(ds, data, evidence)
                spools[RL_PROMPTS.name].add(rl)
                n_traces, n_sft, n_rl = n_traces + len(traces), n_sft + len(sft), n_rl + len(rl)
                passed += sum(t.passed for t in traces)
                reasons.update(t.reject_reason for t in traces if not t.passed)
                no_evidence += sum("no_evidence" in r["flags"] for r in rl)
        if not n_traces:
            raise DataQualityError(
                f"traces {ds}: no training sample's target is reached by a chain; run the "
                "samples and evidence jobs first"
            )
        part = {"ds": ds, "teacher": teacher.name}
        for table, partition in (
            (REASONING_TRACES, part),
            (SFT_EXAMPLES, {**part, "evidence": evidence}),
            (RL_PROMPTS, {"ds": ds, "evidence": evidence}),
        ):
            lakehouse.overwrite(table, spools[table.name].reader(), partition=partition)
    metrics = {
        f"{teacher.name}.traces": n_traces,
        f"{teacher.name}.passed": passed,
        f"{teacher.name}.pass_rate": passed / n_traces,
        "train_samples": len(inputs),
        **{f"skipped.{r}": n for r, n in skipped.items()},
        f"sft_examples.{evidence}": n_sft,
        f"rl_prompts.{evidence}": n_rl,
        f"rl_prompts.{evidence}.no_evidence": no_evidence,
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
