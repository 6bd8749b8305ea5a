"""Scoring job: per user, the top-k items with the reasoning that led to them.

    python -m inference.score --ds 2026-11-25 [--mode eval|serve] [--model NAME|DIR]
        [--adapter DIR] [--top-k 10] [--shards 4] [--shard I] [--chunk-size 32]
        [--publish-only] [--max-users N] [--max-invalid-share 1.0]

``eval`` scores each user's protocol sample (``--split test``, candidate ``--seed 0``):
the target plus 19 random negatives. ``serve`` scores every active user on the
candidates the retrieval job found (``serve_candidates``), i.e. real next items.

Failure and resume: users are split into shards by a stable hash, each shard into
chunks of ``--chunk-size`` users. Every chunk is committed to ``score_chunks`` as soon
as it is scored, keyed by (ds, mode, model version, shard, chunk) and the hash of its
prompts, so a killed run started again skips what is committed and generates only the
rest. ``--shard I`` scores one shard (Airflow maps one task per shard);
``--publish-only`` only publishes. Publishing checks every chunk is there, the
candidates, k distinct items per user, that no reasoning carries a raw user id and
the share of invalid answers, then replaces partition (ds, mode) of ``recommendations``
in one commit. Nothing is published when a check fails.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from inference.engine import Candidate, Scored, ScoreRequest
from r2rec import faults
from r2rec.catalog import item_text, items_as_of
from r2rec.config import parse_ds
from r2rec.contracts import CANDIDATES, RECOMMENDATIONS, SAMPLES, SCORE_CHUNKS, SERVE_CANDIDATES
from r2rec.errors import DataQualityError, R2RecError
from r2rec.evidence import load_evidence
from r2rec.jobs import base_parser, record_metrics, run_main
from r2rec.lakehouse import Lakehouse
from r2rec.models import resolve_model
from r2rec.progress import Progress
from r2rec.prompt import (
    EVIDENCE_MODES,
    MAX_COMPLETION_TOKENS,
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    build_prompt,
    render_messages,
)
from r2rec.seeding import stable_hash

JOB = "score"
MODES = ("eval", "serve")
REDACTED = "[user]"


@dataclass(frozen=True)
class WorkItem:
    user_id: str
    sample_id: str | None
    request: ScoreRequest  # key = user_id


@dataclass(frozen=True)
class Chunk:
    shard: int
    chunk: int
    items: tuple[WorkItem, ...]
    input_hash: str


# ---- inputs ---------------------------------------------------------------------------------


def load_work(
    lakehouse: Lakehouse,
    ds: str,
    mode: str,
    split: str = "test",
    seed: int = 0,
    evidence: str = "chains",
) -> list[WorkItem]:
    """One request per user: the prompt contract's prompt of its history and candidates,
    with item texts as of D and, unless ``evidence="none"``, the candidates' evidence."""
    if mode not in MODES:
        raise R2RecError(f"unknown mode '{mode}' (expected one of {', '.join(MODES)})")
    needs = (SAMPLES, CANDIDATES) if mode == "eval" else (SERVE_CANDIDATES,)
    if not all(lakehouse.exists(t) for t in needs):
        job = "samples" if mode == "eval" else "retrieval"
        raise R2RecError(
            f"no {' / '.join(t.name for t in needs)} for {ds}: run the {job} job first"
        )
    items = items_as_of(lakehouse, ds)
    on_ds = [("ds", "=", ds)]

    def item(item_id: str):
        return item_text(items, item_id)

    if mode == "eval":
        samples = {
            r["sample_id"]: r
            for r in lakehouse.read_arrow(SAMPLES, partitions=on_ds).to_pylist()
            if r["split"] == split
        }
        rows = [
            {**row, "history": samples[row["sample_id"]]["history"], "context": row["sample_id"]}
            for row in lakehouse.read_arrow(CANDIDATES, partitions=on_ds).to_pylist()
            if row["sample_id"] in samples and row["seed"] == seed
        ]
    else:
        rows = [
            {**row, "sample_id": None, "context": row["user_id"]}
            for row in lakehouse.read_arrow(SERVE_CANDIDATES, partitions=on_ds).to_pylist()
        ]
    found: dict = {}
    if evidence != "none":
        scope = "samples" if mode == "eval" else "serve"
        found = load_evidence(lakehouse, ds, scope, [r["context"] for r in rows])
    work = []
    for row in rows:
        prompt, flags = build_prompt(
            row["history"], row["items"], row["labels"], item, found.get(row["context"], {}),
            evidence,
        )  # fmt: skip
        candidates = tuple(
            Candidate(label, i, shown)
            for (label, shown), i in zip(prompt.candidates, row["items"], strict=True)
        )
        request = ScoreRequest(row["user_id"], prompt, candidates, tuple(flags))
        work.append(WorkItem(row["user_id"], row["sample_id"], request))
    if not work:
        raise R2RecError(f"nothing to score for {ds} in mode {mode}")
    users = [w.user_id for w in work]
    if len(set(users)) != len(users):
        raise DataQualityError(f"{mode} {ds}: a user has more than one request")
    return work


def subsample(work: list[WorkItem], max_users: int) -> list[WorkItem]:
    """A deterministic subset of users (by stable hash), the same on every rerun."""
    if not max_users or len(work) <= max_users:
        return work
    return sorted(work, key=lambda w: stable_hash("score-subsample", w.user_id))[:max_users]


def input_hash(items: Sequence[WorkItem], settings: dict | None = None) -> str:
    """What a committed chunk was made from: its prompts and every option that changes
    the output (top-k, completion budget, ...), so a rerun reuses it only if all match."""
    payload = [
        (
            w.user_id,
            w.sample_id,
            w.request.prompt.to_json(),
            [tuple(c.__dict__.values()) for c in w.request.candidates],
            list(w.request.flags),
        )
        for w in items
    ]
    text = json.dumps([PROMPT_VERSION, settings or {}, payload], ensure_ascii=False, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def plan(
    work: Sequence[WorkItem], shards: int, chunk_size: int, settings: dict | None = None
) -> list[Chunk]:
    """Shards by a stable hash of the user; chunks of users in id order within a shard."""
    if shards < 1 or chunk_size < 1:
        raise R2RecError("--shards and --chunk-size must be at least 1")
    by_shard: dict[int, list[WorkItem]] = defaultdict(list)
    for w in work:
        by_shard[stable_hash("shard", w.user_id) % shards].append(w)
    chunks = []
    for shard in sorted(by_shard):
        members = sorted(by_shard[shard], key=lambda w: w.user_id)
        for start in range(0, len(members), chunk_size):
            part = tuple(members[start : start + chunk_size])
            chunks.append(Chunk(shard, start // chunk_size, part, input_hash(part, settings)))
    return chunks


# ---- privacy -------------------------------------------------------------------------------


def redact_user_id(reasoning: str, user_id: str, context: Sequence[str]) -> tuple[str, bool]:
    """Replace the raw user id where the model wrote it and the prompt did not contain it.

    Prompts carry no user ids, so an id in the output that is not a number from the
    prompt itself (an item's year, "Step 1") can only be a leak or an invention.
    """
    pattern = re.compile(rf"(?<![\w-]){re.escape(user_id)}(?![\w-])")
    if not pattern.search(reasoning) or any(pattern.search(t) for t in context):
        return reasoning, False
    return pattern.sub(REDACTED, reasoning), True


def prompt_context(request: ScoreRequest) -> list[str]:
    """The prompt's own text: a number in it (a year, a count) is no leaked user id."""
    return [SYSTEM_PROMPT, *(m["content"] for m in render_messages(request.prompt))]


# ---- rows ----------------------------------------------------------------------------------


def chunk_rows(
    chunk: Chunk, scored: Sequence[Scored], ds: str, mode: str, top_k: int, meta: dict
) -> list[dict]:
    rows = []
    for item, result in zip(chunk.items, scored, strict=True):
        reasoning, redacted = redact_user_id(
            result.reasoning, item.user_id, prompt_context(item.request)
        )
        errors = [*result.errors, *(["user_id_redacted"] if redacted else [])]
        for rank, (cand, score) in enumerate(result.ranked[:top_k], 1):
            rows.append(
                {
                    "ds": ds,
                    "mode": mode,
                    "user_id": item.user_id,
                    "sample_id": item.sample_id,
                    "rank": rank,
                    "item_id": cand.item_id,
                    "label": cand.label,
                    "score": float(score),
                    "reasoning": reasoning,
                    "answer_valid": result.answer_valid,
                    "errors": errors,
                    "history_truncated": result.history_truncated,
                    "prompt_flags": list(result.flags),
                    "reasoning_names_top": bool(result.checks.get("names_top")),
                    "reasoning_grounded": bool(result.checks.get("grounded")),
                    "reasoning_no_repeat": bool(result.checks.get("no_repeat")),
                    "shard": chunk.shard,
                    "chunk": chunk.chunk,
                    "input_hash": chunk.input_hash,
                    **meta,
                }
            )
    return rows


def check_rows(rows: Sequence[dict], chunks: Sequence[Chunk], top_k: int) -> dict[str, int]:
    """Publishing checks; returns failing counts by check name."""
    requests = {w.user_id: w.request for ch in chunks for w in ch.items}
    allowed = {user: {c.item_id for c in r.candidates} for user, r in requests.items()}
    by_user: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_user[r["user_id"]].append(r)
    fails = {
        # A user with no candidates has nothing to rank (an invalid result, no rows).
        "every_user_once": len({u for u, c in allowed.items() if c} ^ set(by_user)),
        "item_is_a_candidate": 0,
        "k_distinct_items": 0,
        "ranks_1_to_k": 0,
        "raw_user_id_in_reasoning": 0,
    }
    for user, user_rows in by_user.items():
        want = min(top_k, len(allowed.get(user, ())))
        items = [r["item_id"] for r in user_rows]
        fails["item_is_a_candidate"] += sum(i not in allowed.get(user, ()) for i in items)
        fails["k_distinct_items"] += int(len(set(items)) != want or len(items) != want)
        fails["ranks_1_to_k"] += int(
            sorted(r["rank"] for r in user_rows) != list(range(1, want + 1))
        )
        pattern = re.compile(rf"(?<![\w-]){re.escape(user)}(?![\w-])")
        context = prompt_context(requests[user]) if user in requests else []
        fails["raw_user_id_in_reasoning"] += int(
            bool(pattern.search(user_rows[0]["reasoning"] or ""))
            and not any(pattern.search(t) for t in context)
        )
    return fails


# ---- the job -------------------------------------------------------------------------------


def committed(lakehouse: Lakehouse, ds: str, mode: str, version: str) -> pa.Table | None:
    if not lakehouse.exists(SCORE_CHUNKS):
        return None
    table = lakehouse.read_arrow(SCORE_CHUNKS, partitions=[("ds", "=", ds), ("mode", "=", mode)])
    return table.filter(pc.equal(table["model_version"], version))


def _chunk_key(shard: int, chunk: int, digest: str) -> tuple[int, int, str]:
    return (int(shard), int(chunk), str(digest))


def committed_chunks(table: pa.Table | None) -> dict[tuple[int, int, str], str]:
    """(shard, chunk, input hash) -> the run id that committed it first."""
    if table is None:
        return {}
    done: dict[tuple[int, int, str], str] = {}
    cols = table.select(["shard", "chunk", "input_hash", "run_id"]).to_pylist()
    for r in cols:
        key = _chunk_key(r["shard"], r["chunk"], r["input_hash"])
        done.setdefault(key, r["run_id"])
    return done


def run(
    lakehouse: Lakehouse,
    ds: str,
    *,
    mode: str = "eval",
    model: str | None = None,
    adapter: str | None = None,
    top_k: int = 10,
    shards: int = 4,
    only_shard: int | None = None,
    chunk_size: int = 32,
    publish: bool = True,
    score: bool = True,
    max_users: int = 0,
    max_invalid_share: float = 1.0,
    split: str = "test",
    seed: int = 0,
    max_new_tokens: int = MAX_COMPLETION_TOKENS,
    evidence: str = "chains",
    scorer_factory: Callable[[], object] | None = None,
    model_version: str | None = None,
) -> dict:
    from r2rec.registry import resolve_model_ref

    ds = parse_ds(ds)
    if top_k < 1 or max_new_tokens < 1:
        raise R2RecError("--top-k and --max-new-tokens must be at least 1")
    if evidence not in EVIDENCE_MODES:
        raise R2RecError(f"--evidence must be one of {', '.join(EVIDENCE_MODES)}")
    ref = resolve_model_ref(lakehouse, model, adapter)
    model, adapter = ref.model, ref.adapter
    version = model_version or resolve_model(model, adapter, ref.registered).version
    work = subsample(load_work(lakehouse, ds, mode, split, seed, evidence), max_users)
    # Every option that changes a chunk's rows: a rerun with another value rescores.
    settings = {"top_k": top_k, "max_new_tokens": max_new_tokens, "evidence": evidence}
    chunks = plan(work, shards, chunk_size, settings)
    run_id = uuid.uuid4().hex
    meta = {
        "model_version": version,
        "prompt_version": PROMPT_VERSION,
        "run_id": run_id,
        "evidence": evidence,
    }
    report: dict = {"ds": ds, "mode": mode, "model_version": version, "run_id": run_id}
    report.update(users=len(work), chunks=len(chunks), generated_chunks=0, skipped_chunks=0)

    if score:
        done = committed_chunks(committed(lakehouse, ds, mode, version))
        mine = [c for c in chunks if only_shard is None or c.shard == only_shard]
        todo = [c for c in mine if _chunk_key(c.shard, c.chunk, c.input_hash) not in done]
        report["skipped_chunks"] = len(mine) - len(todo)
        scorer = None
        users = sum(len(c.items) for c in todo)
        shard = "" if only_shard is None else f" shard {only_shard}"
        with Progress(f"score {mode} ds={ds}{shard}", users, "users") as progress:
            for chunk in todo:
                if scorer is None:  # no engine start when everything is committed already
                    scorer = (
                        scorer_factory()
                        if scorer_factory
                        else _default_scorer(model, adapter, max_new_tokens, version)
                    )
                scored = scorer.score([w.request for w in chunk.items])
                rows = chunk_rows(chunk, scored, ds, mode, top_k, meta)
                table = pa.Table.from_pylist(rows, SCORE_CHUNKS.arrow_schema())
                lakehouse.append(SCORE_CHUNKS, table)
                report["generated_chunks"] += 1
                progress.advance(len(chunk.items))
                faults.checkpoint("score.chunk_committed")
        if scorer is not None and scorer_factory is None:
            scorer.close()  # the engine this run started; a caller's own stays open
    if publish:
        report.update(_publish(lakehouse, ds, mode, version, chunks, top_k, max_invalid_share))
    return report


def _quoted(text: str) -> str:
    return text.replace("'", "''")


def _default_scorer(model: str | None, adapter: str | None, max_new_tokens: int, version: str):
    from inference.engine import LLMScorer

    return LLMScorer(model, adapter, max_new_tokens=max_new_tokens, registered=version)


def _publish(
    lakehouse: Lakehouse,
    ds: str,
    mode: str,
    version: str,
    chunks: Sequence[Chunk],
    top_k: int,
    max_invalid_share: float,
) -> dict:
    staged = committed(lakehouse, ds, mode, version)
    done = committed_chunks(staged)
    missing = [c for c in chunks if _chunk_key(c.shard, c.chunk, c.input_hash) not in done]
    if missing:
        shards = sorted({c.shard for c in missing})
        raise R2RecError(
            f"{mode} {ds}: {len(missing)} of {len(chunks)} chunks are not scored yet "
            f"(shards {shards}); run the shard tasks before publishing"
        )
    # A chunk committed twice (two attempts racing) is published from its first commit.
    keep = {
        (k, run_id)
        for k, run_id in done.items()
        if k in {_chunk_key(c.shard, c.chunk, c.input_hash) for c in chunks}
    }
    rows = [
        r
        for r in staged.to_pylist()
        if (_chunk_key(r["shard"], r["chunk"], r["input_hash"]), r["run_id"]) in keep
    ]
    fails = check_rows(rows, chunks, top_k)
    users = {r["user_id"]: r["answer_valid"] for r in rows}
    invalid = sum(not v for v in users.values()) / max(len(users), 1)
    truncated = len({r["user_id"] for r in rows if r["history_truncated"]})
    # What a reader of the published reasoning meets, per user (METHOD §10: the checks of
    # prompt.reasoning_checks), beside the same shares eval_metrics holds per sample.
    first = {r["user_id"]: r for r in rows if r["rank"] == 1}
    reasoning = {
        f"reasoning_{check}": sum(bool(r[f"reasoning_{check}"]) for r in first.values())
        / max(len(first), 1)
        for check in ("names_top", "grounded", "no_repeat")
    }
    metrics = {
        "users": float(len(users)),
        "invalid_share": invalid,
        "history_truncated_users": float(truncated),
        "rows": float(len(rows)),
        **reasoning,
        **{f"dq.{k}": float(v) for k, v in fails.items()},
    }
    record_metrics(lakehouse, f"{JOB}.{mode}", ds, metrics)
    failed = {k: v for k, v in fails.items() if v}
    if failed:
        detail = "; ".join(f"'{k}' failed for {v} user(s)" for k, v in failed.items())
        raise DataQualityError(f"{mode} {ds}: nothing published: {detail}")
    if invalid > max_invalid_share:
        raise DataQualityError(
            f"{mode} {ds}: {invalid:.1%} of answers are invalid, above the limit "
            f"{max_invalid_share:.1%}; nothing published"
        )
    staged_rows = pa.Table.from_pylist(rows, SCORE_CHUNKS.arrow_schema())
    published = staged_rows.select(RECOMMENDATIONS.column_names)
    version_written = lakehouse.overwrite(
        RECOMMENDATIONS, published, partition={"ds": ds, "mode": mode}
    )
    # Staging keeps exactly what was published for this model (stale chunks go), so a
    # rerun of the date reuses it and other models' staged work is left alone.
    lakehouse.overwrite(
        SCORE_CHUNKS,
        staged_rows,
        predicate=f"ds = '{ds}' AND mode = '{mode}' AND model_version = '{_quoted(version)}'",
    )
    return {
        "published_users": len(users),
        "invalid_share": round(invalid, 4),
        "history_truncated_users": truncated,
        **{k: round(v, 4) for k, v in reasoning.items()},
        "recommendations_version": version_written,
    }


def main(argv: list[str] | None = None) -> int:
    p = base_parser("python -m inference.score", __doc__.splitlines()[0])
    p.add_argument("--mode", choices=MODES, default="eval")
    p.add_argument(
        "--model",
        help="champion, registry:<run id or version>, or a model directory "
        "(default: bundled SmolLM2)",
    )
    p.add_argument("--adapter", help="LoRA adapter directory, served with LoRARequest")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--shard", type=int, help="score only this shard (0-based), do not publish")
    p.add_argument("--chunk-size", type=int, default=32, help="users per committed chunk")
    p.add_argument("--publish-only", action="store_true", help="publish committed chunks")
    p.add_argument("--max-users", type=int, default=0, help="deterministic subsample; 0 = all")
    p.add_argument("--max-invalid-share", type=float, default=1.0)
    p.add_argument("--split", choices=["valid", "test"], default="test", help="eval mode")
    p.add_argument("--seed", type=int, default=0, help="eval mode: candidate seed")
    p.add_argument("--max-new-tokens", type=int, default=MAX_COMPLETION_TOKENS)
    p.add_argument(
        "--evidence", choices=EVIDENCE_MODES, default="chains",
        help="prompt with the candidates' evidence (candidate_evidence), or the paper's",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.shard is not None and args.publish_only:
        p.error("--shard and --publish-only exclude each other")

    def body():
        return run(
            Lakehouse(args.lakehouse),
            args.ds,
            mode=args.mode,
            model=args.model,
            adapter=args.adapter,
            top_k=args.top_k,
            shards=args.shards,
            only_shard=args.shard,
            chunk_size=args.chunk_size,
            publish=args.shard is None,
            score=not args.publish_only,
            max_users=args.max_users,
            max_invalid_share=args.max_invalid_share,
            split=args.split,
            seed=args.seed,
            max_new_tokens=args.max_new_tokens,
            evidence=args.evidence,
        )

    return run_main(body, job="score", argv=argv, ds=args.ds, lakehouse=args.lakehouse)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
