"""Table contracts: the one place every Delta table of the pipeline is declared.

A contract names the table, its columns (type and nullability), partition columns,
key and schema version. Types are written in a small, engine-neutral notation and
converted on demand to Arrow (delta-rs) or Spark types, so importing this module is
cheap and both engines agree on one schema.

Supported types: string, int32, int64, double, boolean, timestamp (microseconds, UTC),
array<T>, map<string,T>, struct<name:T,...>.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from r2rec.errors import R2RecError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    from pyspark.sql import types as T


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True
    doc: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str
    layer: str  # bronze | silver | gold | ops
    columns: tuple[Column, ...]
    partition_by: tuple[str, ...] = ()
    key: tuple[str, ...] = ()
    schema_version: int = 1
    doc: str = ""
    extra_properties: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate column names")
        for col in (*self.partition_by, *self.key):
            if col not in names:
                raise ValueError(f"{self.name}: '{col}' is not a column")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def properties(self) -> dict[str, str]:
        """Delta table properties written at creation (user-defined keys are allowed)."""
        props = {
            "r2rec.schema_version": str(self.schema_version),
            "r2rec.layer": self.layer,
            "r2rec.key": ",".join(self.key),
            **self.extra_properties,
        }
        return {k: v for k, v in props.items() if v}

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema([pa.field(c.name, to_arrow(c.type), c.nullable) for c in self.columns])

    def spark_schema(self) -> T.StructType:
        from pyspark.sql import types as T

        return T.StructType(
            [T.StructField(c.name, to_spark(c.type), c.nullable) for c in self.columns]
        )


def _split_generic(type_str: str) -> tuple[str, list[str]]:
    if "<" not in type_str:
        return type_str, []
    head, inner = type_str.split("<", 1)
    inner = inner[:-1]
    args, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        if ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
        else:
            cur += ch
    args.append(cur.strip())
    return head, args


def to_arrow(type_str: str) -> pa.DataType:
    import pyarrow as pa

    head, args = _split_generic(type_str)
    simple = {
        "string": pa.string(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }
    if head in simple and not args:
        return simple[head]
    if head == "array" and len(args) == 1:
        return pa.list_(pa.field("element", to_arrow(args[0]), True))
    if head == "map" and len(args) == 2:
        return pa.map_(to_arrow(args[0]), to_arrow(args[1]))
    if head == "struct" and args:
        return pa.struct([pa.field(n, to_arrow(t)) for n, t in (_field(a) for a in args)])
    raise ValueError(f"unsupported contract type '{type_str}'")


def to_spark(type_str: str) -> T.DataType:
    from pyspark.sql import types as T

    head, args = _split_generic(type_str)
    simple = {
        "string": T.StringType(),
        "int32": T.IntegerType(),
        "int64": T.LongType(),
        "double": T.DoubleType(),
        "boolean": T.BooleanType(),
        "timestamp": T.TimestampType(),
    }
    if head in simple and not args:
        return simple[head]
    if head == "array" and len(args) == 1:
        return T.ArrayType(to_spark(args[0]), True)
    if head == "map" and len(args) == 2:
        return T.MapType(to_spark(args[0]), to_spark(args[1]), True)
    if head == "struct" and args:
        return T.StructType([T.StructField(n, to_spark(t), True) for n, t in map(_field, args)])
    raise ValueError(f"unsupported contract type '{type_str}'")


def _field(arg: str) -> tuple[str, str]:
    name, _, type_str = arg.partition(":")
    if not name or not type_str:
        raise ValueError(f"struct field '{arg}' is not name:type")
    return name.strip(), type_str.strip()


def _cols(*specs: tuple) -> tuple[Column, ...]:
    return tuple(Column(*s) for s in specs)


# --- bronze: raw records exactly as read, one row per source record -------------------
_RAW_COLUMNS = (
    ("ds", "string", False, "ingest run date (YYYY-MM-DD)"),
    ("source", "string", False, "source name, e.g. movielens-100k"),
    ("source_file", "string", False, "file the record came from"),
    ("line_number", "int64", True, "1-based line in source_file (null for columnar files)"),
    ("raw_record", "string", False, "the record's raw text (JSON for columnar sources)"),
    ("fields", "map<string,string>", True, "raw field values by canonical name, unparsed"),
    ("parse_error", "string", True, "why the record could not be split into fields"),
)

INTERACTIONS_RAW = TableSpec(
    name="interactions_raw",
    layer="bronze",
    columns=_cols(*_RAW_COLUMNS),
    partition_by=("ds", "source"),
    key=("ds", "source", "source_file", "line_number"),
    doc="Every interaction record of an ingest run, raw values kept as strings.",
)

ITEMS_RAW = TableSpec(
    name="items_raw",
    layer="bronze",
    columns=_cols(*_RAW_COLUMNS),
    partition_by=("ds", "source"),
    key=("ds", "source", "source_file", "line_number"),
    doc="Every item-metadata record of an ingest run, raw values kept as strings.",
)

# --- silver: normalised, deduplicated, typed ------------------------------------------
INTERACTIONS = TableSpec(
    name="interactions",
    layer="silver",
    columns=_cols(
        ("user_id", "string", False, "source user id, as a string"),
        ("item_id", "string", False, "source item id, as a string"),
        ("rating", "double", True, "explicit rating; null for implicit feedback"),
        ("ts", "timestamp", False, "event time, UTC"),
        ("ds", "string", False, "ingest run that first brought this event"),
        ("source", "string", False, "source name"),
    ),
    partition_by=("ds", "source"),
    key=("source", "user_id", "item_id", "ts"),
    doc="User-item events. A run for date D reads rows with ds <= D and ts < D.",
)

ITEMS = TableSpec(
    name="items",
    layer="silver",
    columns=_cols(
        ("item_id", "string", False, "source item id"),
        ("title", "string", True, "display title"),
        ("year", "int32", True, "release / publication year, if known"),
        ("genres", "array<string>", True, "genres or categories"),
        ("text", "string", True, "title, year and genres/categories assembled for prompts"),
        ("ds", "string", False, "ingest run that wrote this version of the item"),
        ("source", "string", False, "source name"),
    ),
    partition_by=("ds", "source"),
    key=("source", "item_id"),
    doc="Item metadata per ingest run; the latest ds <= D is the item as of D.",
)

# Delta stores an empty partition value as null, so "no source" needs a real value.
NO_SOURCE = "-"

# --- ops -------------------------------------------------------------------------------
QUARANTINE = TableSpec(
    name="quarantine",
    layer="ops",
    columns=_cols(
        ("ds", "string", False, "run date of the job that rejected the record"),
        ("job", "string", False, "job that rejected it, e.g. ingest"),
        ("source", "string", False, "source name ('-' when not source-specific)"),
        ("entity", "string", False, "interaction | item | ..."),
        ("source_file", "string", True, "file the record came from"),
        ("line_number", "int64", True, "1-based line in source_file"),
        ("raw_record", "string", True, "the record as read"),
        ("reason", "string", False, "machine-readable reason code"),
        ("detail", "string", True, "human-readable detail"),
    ),
    partition_by=("ds", "job", "source"),
    key=("ds", "job", "source", "entity", "source_file", "line_number"),
    doc="Records a job refused, with the reason. Nothing is dropped silently.",
)

JOB_METRICS = TableSpec(
    name="job_metrics",
    layer="ops",
    columns=_cols(
        ("ds", "string", False, "run date"),
        ("job", "string", False, "job that measured it"),
        ("metric", "string", False, "e.g. chain_coverage, dq.candidates_exactly_n"),
        ("value", "double", True, "the measurement"),
        ("detail", "string", True, "context, e.g. the failing count or the config"),
    ),
    partition_by=("ds", "job"),
    key=("ds", "job", "metric"),
    doc="Per-run measurements and data-quality results, one partition per (ds, job).",
)

JOB_RUNS = TableSpec(
    name="job_runs",
    layer="ops",
    columns=_cols(
        ("ds", "string", True, "run date (null: the job failed before reading its options)"),
        ("job", "string", False, "ingest, graph, ..., score, evaluate, promote, backtest"),
        ("run_id", "string", False, "this run (matches the job's start and end log lines)"),
        ("status", "string", False, "success | failed"),
        ("started_at", "timestamp", False, "when the job started"),
        ("ended_at", "timestamp", False, "when it ended"),
        ("elapsed_s", "double", False, "wall seconds"),
        ("inputs", "map<string,int64>", True, "table -> version it read"),
        ("outputs", "map<string,int64>", True, "table -> version it committed last"),
        ("config", "string", True, "its command line as JSON, secrets redacted"),
        ("report", "string", True, "its JSON report (success)"),
        ("error", "string", True, "its error line (failed)"),
        ("git_commit", "string", True, "the code's commit ($R2REC_GIT_COMMIT or HEAD)"),
        ("host", "string", True, "where it ran"),
        ("pid", "int64", True, "its process id"),
        ("peak_rss_mb", "double", True, "peak resident MiB of the job's Python process"),
        ("jvm_peak_rss_mb", "double", True, "peak resident MiB of its Spark driver JVM"),
    ),
    key=("run_id",),
    doc="One row per job run, failures included: what ran, on what, for how long.",
)

# --- graph, samples, candidates, chains (docs/METHOD.md §1-3, §10) -----------------------
GRAPH_EDGES = TableSpec(
    name="graph_edges",
    layer="gold",
    columns=_cols(
        ("ds", "string", False, "run date D: edges from events with ts < D"),
        ("user_id", "string", False, ""),
        ("item_id", "string", False, ""),
        ("rating", "double", True, "rating of the first interaction"),
        ("ts", "timestamp", False, "first interaction of the user with the item"),
        ("weight", "double", False, "rating, or 1.0 for implicit feedback"),
    ),
    partition_by=("ds",),
    key=("ds", "user_id", "item_id"),
    doc="The bipartite user-item graph as of D, one edge per (user, item).",
)

GRAPH_STATS = TableSpec(
    name="graph_stats",
    layer="gold",
    columns=_cols(
        ("ds", "string", False, "run date"),
        ("entity", "string", False, "user | item"),
        ("nodes", "int64", False, "number of users or items"),
        ("edges", "int64", False, "number of edges"),
        ("min_degree", "int64", False, ""),
        ("p50_degree", "double", False, ""),
        ("p90_degree", "double", False, ""),
        ("p99_degree", "double", False, ""),
        ("max_degree", "int64", False, ""),
        ("mean_degree", "double", False, ""),
    ),
    partition_by=("ds",),
    key=("ds", "entity"),
    doc="Degree statistics of the graph as of D.",
)

SAMPLES = TableSpec(
    name="samples",
    layer="gold",
    columns=_cols(
        ("ds", "string", False, "run date"),
        ("split", "string", False, "train | valid | test"),
        ("sample_id", "string", False, "<user_id>:<position>"),
        ("user_id", "string", False, ""),
        ("position", "int32", False, "0-based position of the target in the user's sequence"),
        ("history", "array<string>", False, "up to L previous items, oldest first"),
        ("target_item_id", "string", False, ""),
        ("target_ts", "timestamp", False, ""),
    ),
    partition_by=("ds",),
    key=("ds", "sample_id"),
    doc="Time-ordered leave-one-out samples as of D.",
)

CANDIDATES = TableSpec(
    name="candidates",
    layer="gold",
    columns=_cols(
        ("ds", "string", False, "run date"),
        ("split", "string", False, "train | valid | test"),
        ("sample_id", "string", False, ""),
        ("seed", "int64", False, "candidate seed"),
        ("user_id", "string", False, ""),
        ("target_item_id", "string", False, ""),
        ("items", "array<string>", False, "N candidate items in display order"),
        ("labels", "array<string>", False, "C1..CN, aligned with items"),
        ("target_label", "string", False, "label of the target"),
        ("sampler", "string", False, "uniform | popularity"),
    ),
    partition_by=("ds",),
    key=("ds", "sample_id", "seed"),
    doc="Target plus N-1 unseen negatives per sample and seed, seeded shuffle.",
)

CHAINS = TableSpec(
    name="chains",
    layer="gold",
    columns=_cols(
        ("ds", "string", False, "run date"),
        ("sample_id", "string", False, ""),
        ("chain_id", "string", False, "<sample_id>/<rank>"),
        ("rank", "int32", False, "1 = best"),
        ("user_id", "string", False, "u0"),
        ("i0", "string", False, "item in u0's history"),
        ("u0_i0_ts", "timestamp", False, ""),
        ("u1", "string", False, "similar user"),
        ("u1_i0_ts", "timestamp", False, ""),
        ("i1", "string", False, "item u1 went on to (the target for positive chains)"),
        ("u1_i1_ts", "timestamp", False, ""),
        ("target_ts", "timestamp", False, "u0's target interaction"),
        ("overlap", "int32", False, "|I(u0) ∩ I(u1)| before the target"),
        ("jaccard", "double", False, ""),
        ("recency", "double", False, "(j+1)/|H| for i0 at index j of the history"),
        ("score", "double", False, "jaccard + w * recency"),
    ),
    partition_by=("ds",),
    key=("ds", "chain_id"),
    doc="Top-K positive interaction chains u0 -> i0 -> u1 -> i1 per training sample.",
)

CANDIDATE_EVIDENCE = TableSpec(
    name="candidate_evidence",
    layer="gold",
    columns=_cols(
        ("ds", "string", False, "run date"),
        ("scope", "string", False, "samples (protocol candidates) | serve (serve_candidates)"),
        ("context_id", "string", False, "the prompt it grounds: sample_id, or user_id (serve)"),
        ("user_id", "string", False, "u0"),
        ("item_id", "string", False, "the candidate the chains reach"),
        ("cutoff", "timestamp", False, "only edges before this count: the target's time, or D"),
        ("users", "int32", False, "similar users u1 with a chain to the candidate"),
        ("paths", "int32", False, "chains u0 -> i0 -> u1 -> candidate"),
        ("overlap", "double", False, "mean Jaccard overlap of those users with u0"),
        ("score", "double", False, "evidence ranker's: overlap sum / sqrt(candidate's users)"),
        ("via", "array<string>", False, "history items i0 the chains pass, most users first"),
        ("via_users", "array<int32>", False, "similar users through each via item"),
    ),
    partition_by=("ds", "scope"),
    key=("ds", "scope", "context_id", "item_id"),
    doc="Chains reaching each candidate from the user's history, as of the prompt's cutoff; "
    "a candidate without a row has no evidence.",
)

# --- interaction-of-thought traces and training data (docs/METHOD.md §4-7) ---------------
MESSAGES = "array<struct<role:string,content:string>>"  # chat messages, as trl reads them

REASONING_TRACES = TableSpec(
    name="reasoning_traces",
    layer="gold",
    columns=_cols(
        ("ds", "string", False, "run date"),
        ("teacher", "string", False, "template | vllm | openai"),
        ("sample_id", "string", False, ""),
        ("chain_id", "string", False, "the chain the trace verbalises"),
        ("model", "string", False, "teacher model (template version or model name)"),
        ("prompt_version", "string", False, "r2rec.prompt.PROMPT_VERSION"),
        ("hops", "array<string>", False, "hop of each thought: u0->i0, i0->u1, u1->i1, final"),
        ("thoughts", "array<string>", False, "one thought per hop"),
        ("completion", "string", False, "<think>...</think><answer>[Ck]</answer>"),
        ("answer_label", "string", True, "label the teacher named"),
        ("target_label", "string", False, "label of the target"),
        ("passed", "boolean", False, "kept by the quality filter"),
        ("reject_reason", "string", True, "why the filter rejected it"),
    ),
    partition_by=("ds", "teacher"),
    key=("ds", "teacher", "chain_id"),
    doc="Every trace a teacher wrote, with the quality filter's verdict.",
)

SFT_EXAMPLES = TableSpec(
    name="sft_examples",
    layer="gold",
    columns=_cols(
        ("ds", "string", False, "run date"),
        ("teacher", "string", False, ""),
        ("evidence", "string", False, "chains (prompt v2 with evidence) | none (the paper's)"),
        ("sample_id", "string", False, ""),
        ("chain_id", "string", False, ""),
        ("prompt_version", "string", False, ""),
        ("prompt", MESSAGES, False, "system + user messages: history, candidates, evidence"),
        ("completion", MESSAGES, False, "one assistant message: the trace and the answer"),
    ),
    partition_by=("ds", "teacher", "evidence"),
    key=("ds", "teacher", "evidence", "chain_id"),
    schema_version=2,
    doc="Prompt-completion pairs from traces that passed the filter (trl SFTTrainer format).",
)

RL_PROMPTS = TableSpec(
    name="rl_prompts",
    layer="gold",
    columns=_cols(
        ("ds", "string", False, "run date"),
        ("evidence", "string", False, "chains | none: how the prompt shows evidence"),
        ("sample_id", "string", False, ""),
        ("split", "string", False, "train | valid | test"),
        ("prompt_version", "string", False, ""),
        ("prompt", MESSAGES, False, "system + user messages (trl GRPOTrainer format)"),
        ("target_label", "string", False, "label of the target"),
        ("candidate_labels", "array<string>", False, "C1..CN"),
        ("candidate_item_ids", "array<string>", False, "item ids aligned with the labels"),
        ("prompt_facts", "string", False, "the prompt as JSON: what rewards check citations by"),
        ("flags", "array<string>", False, "no_evidence | evidence_trimmed | history_truncated"),
    ),
    partition_by=("ds", "evidence"),
    key=("ds", "evidence", "sample_id"),
    schema_version=2,
    doc="Prompts with what the rewards need: target, labels and the prompt's facts.",
)

# --- batch inference and evaluation (docs/METHOD.md §8-9) ---------------------------------
SERVE_CANDIDATES = TableSpec(
    name="serve_candidates",
    layer="gold",
    columns=_cols(
        ("ds", "string", False, "run date"),
        ("user_id", "string", False, "an active user as of D"),
        ("history", "array<string>", False, "the user's last L items before D, oldest first"),
        ("items", "array<string>", False, "retrieved unseen items in display order"),
        ("labels", "array<string>", False, "C1..Cn, aligned with items"),
        ("sources", "array<string>", False, "chain | popular, aligned with items"),
        ("retrieval_scores", "array<double>", False, "chain paths, or popularity share"),
    ),
    partition_by=("ds",),
    key=("ds", "user_id"),
    doc="Serve-mode candidates: items chains reach from recent history, topped up by popularity.",
)

_REC_COLUMNS = (
    ("ds", "string", False, "run date"),
    ("mode", "string", False, "eval | serve"),
    ("user_id", "string", False, ""),
    ("sample_id", "string", True, "eval mode: the scored sample"),
    ("rank", "int32", False, "1 = best"),
    ("item_id", "string", False, "one of the user's candidates"),
    ("label", "string", False, "its candidate label in the prompt"),
    (
        "score",
        "double",
        False,
        "log-probability of the label given prompt + reasoning "
        "(ranks after the first follow the prompt's evidence, then this)",
    ),
    ("reasoning", "string", True, "the model's thoughts (same for every rank of a user)"),
    ("answer_valid", "boolean", False, "the completion parsed and named a candidate"),
    ("errors", "array<string>", False, "format errors of the completion"),
    ("history_truncated", "boolean", False, "oldest history items dropped to fit the model"),
    ("model_version", "string", False, "registry version or model path + adapter"),
    ("prompt_version", "string", False, ""),
    ("run_id", "string", False, "the scoring run that generated it"),
    ("evidence", "string", False, "chains (prompt with evidence) | none (the paper's prompt)"),
    ("prompt_flags", "array<string>", False, "no_evidence, evidence_trimmed, history_truncated"),
    ("reasoning_names_top", "boolean", False, "the reasoning names the item ranked first"),
    ("reasoning_grounded", "boolean", False, "every item, label, count, chain it cites is shown"),
    ("reasoning_no_repeat", "boolean", False, "no step of the reasoning repeats another"),
)

# The order retrieval ranks its candidates in (chains first, then popular; each by score,
# then item id): spark_jobs.retrieval picks the N best by it, the backtest replays it.
SOURCE_PRIORITY = ("chain", "popular")


def retrieval_order(items, sources, scores) -> list[str]:
    """A serve_candidates row's items in retrieval order (its display order is shuffled)."""
    ranked = sorted(
        zip(items, sources, scores, strict=True),
        key=lambda c: (SOURCE_PRIORITY.index(c[1]), -c[2], c[0]),
    )
    return [item for item, _, _ in ranked]


BACKTEST_METRICS = TableSpec(
    name="backtest_metrics",
    layer="gold",
    columns=_cols(
        ("ds", "string", False, "served date D"),
        ("horizon_days", "int64", False, "H: interactions in [D, D + H) count"),
        ("model", "string", False, "llm:<version> (published) | retrieval | popularity | ..."),
        (
            "metric",
            "string",
            False,
            "hr@k, recall@k, ndcg@k, mrr@k, coverage@k, novelty@k, "
            "share_active, users, users_with_future",
        ),
        ("value", "double", False, ""),
        ("ci_low", "double", True, "95% interval over users (per-user metrics only)"),
        ("ci_high", "double", True, ""),
        ("users", "int64", False, "users the value is over"),
        ("k", "int64", False, "list length compared"),
        ("run_id", "string", False, "the backtest run"),
        ("detail", "string", True, "fit seconds, training edges, catalogue size"),
    ),
    partition_by=("ds",),
    key=("ds", "horizon_days", "model", "metric"),
    doc="Published recommendations (and baselines as of D) against what users did next.",
)

SCORE_CHUNKS = TableSpec(
    name="score_chunks",
    layer="ops",
    columns=_cols(
        *_REC_COLUMNS,
        ("shard", "int32", False, "user shard"),
        ("chunk", "int32", False, "chunk within the shard"),
        ("input_hash", "string", False, "hash of the chunk's prompts: reused only if unchanged"),
    ),
    partition_by=("ds", "mode"),
    key=("ds", "mode", "model_version", "shard", "chunk", "user_id", "rank"),
    schema_version=2,
    doc="Scoring work committed chunk by chunk, so a killed run resumes where it stopped.",
)

RECOMMENDATIONS = TableSpec(
    name="recommendations",
    layer="gold",
    columns=_cols(*_REC_COLUMNS),
    partition_by=("ds", "mode"),
    key=("ds", "mode", "user_id", "rank"),
    schema_version=2,
    doc="Per user, the top-k items with the reasoning that led to them.",
)

EVAL_METRICS = TableSpec(
    name="eval_metrics",
    layer="gold",
    columns=_cols(
        ("ds", "string", False, "run date"),
        ("model", "string", False, "popularity | ... | evidence | llm:<version>"),
        ("split", "string", False, "valid | test"),
        ("protocol", "string", False, "sampled (N candidates) | full (all items)"),
        ("subset", "string", False, "all, or the samples the LLM ranked (e.g. hash-300)"),
        ("seed", "int64", True, "candidate seed; null = mean over seeds"),
        ("metric", "string", False, "hr@1, valid_ratio, hr@5, ndcg@5, ndcg@10, ..."),
        ("value", "double", False, ""),
        ("ci_low", "double", True, "95% interval over samples (seed means), mean rows only"),
        ("ci_high", "double", True, ""),
        ("samples", "int64", False, "samples evaluated"),
        ("run_id", "string", False, "the evaluation run"),
        ("detail", "string", True, "model config, budget, prompt version"),
    ),
    # Not partitioned by model: versions such as llm:<name>@<hash>+<adapter>@<hash> do not
    # make safe directory names; a rerun replaces (ds, model) by predicate instead.
    partition_by=("ds",),
    key=("ds", "model", "split", "protocol", "subset", "seed", "metric"),
    schema_version=2,
    doc="Evaluation results per model; a rerun of (ds, model) replaces exactly those rows.",
)

EVAL_OUTCOMES = TableSpec(
    name="eval_outcomes",
    layer="gold",
    columns=_cols(
        ("ds", "string", False, "run date"),
        ("model", "string", False, "as in eval_metrics"),
        ("split", "string", False, "valid | test"),
        ("sample_id", "string", False, ""),
        ("seed", "int64", False, "candidate seed"),
        ("target_rank", "int64", False, "1-based rank of the target among the N candidates"),
        ("answer_valid", "boolean", False, "the answer was well formed and a candidate"),
        ("hit1", "double", False, "HR@1 of this ranking: 1 when valid and the target first"),
        ("run_id", "string", False, "the evaluation run; equals eval_metrics.run_id"),
    ),
    # Same layout and rerun rule as eval_metrics: a rerun of (ds, model) replaces both.
    partition_by=("ds",),
    key=("ds", "model", "split", "sample_id", "seed"),
    doc="Per sample and seed, where each model put the target: what a paired comparison of "
    "two models (promotion) needs beyond their means.",
)

# --- training (docs/METHOD.md §6-7) --------------------------------------------------------
MODEL_REGISTRY = TableSpec(
    name="model_registry",
    layer="ops",
    columns=_cols(
        ("model_version", "string", False, "<base>@<hash>[+<adapter>@<hash>]: what rows record"),
        ("run_id", "string", False, "the training run, e.g. sft-2026-11-25-1a2b3c4d"),
        ("ds", "string", False, "data date the run trained on"),
        ("stage", "string", False, "sft | grpo"),
        ("base_model", "string", False, "base model spec"),
        ("base_version", "string", False, "base model version (name@checksum)"),
        ("model_path", "string", False, "base weights directory (or full fine-tune output)"),
        ("adapter_path", "string", True, "LoRA adapter directory; null for full fine-tuning"),
        ("parent_version", "string", True, "the model this run started from (GRPO: the SFT)"),
        ("run_dir", "string", False, "checkpoints, manifest, curves"),
        ("manifest", "string", False, "the run manifest (JSON)"),
        ("status", "string", False, "registered | champion | retired | rejected"),
        ("valid_hr1", "double", True, "validation HR@1 (mean over seeds) from eval_metrics"),
        ("metrics", "map<string,double>", True, "<split>/<protocol>/<metric> from eval_metrics"),
        ("eval_samples", "int64", True, "samples per split behind those metrics"),
        ("registered_at", "timestamp", False, "when the run finished"),
    ),
    # Keyed by run, not version: a run that changes nothing (a GRPO step with no reward
    # spread) saves its parent's weights, and keying on the version let it overwrite them.
    key=("run_id",),
    doc="Every training run (two runs share a model_version when the second changed no "
    "weight); exactly one 'champion' is what scoring uses by default.",
)

MODEL_PROMOTIONS = TableSpec(
    name="model_promotions",
    layer="ops",
    columns=_cols(
        ("ds", "string", False, "evaluation date the decision used"),
        ("candidate_version", "string", False, ""),
        ("champion_version", "string", True, "the champion (or base model) compared against"),
        ("candidate_valid_hr1", "double", False, ""),
        ("champion_valid_hr1", "double", True, ""),
        ("candidate_samples", "int64", False, "valid samples behind the candidate's HR@1"),
        ("champion_samples", "int64", True, ""),
        ("min_gain", "double", False, "candidate must reach champion + min_gain"),
        ("decision", "string", False, "promoted | rejected"),
        ("reason", "string", False, ""),
        ("decided_at", "timestamp", False, ""),
    ),
    key=("ds", "candidate_version", "decided_at"),
    doc="Append-only log of promotion decisions and the numbers behind them.",
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        INTERACTIONS_RAW,
        ITEMS_RAW,
        INTERACTIONS,
        ITEMS,
        QUARANTINE,
        JOB_METRICS,
        JOB_RUNS,
        GRAPH_EDGES,
        GRAPH_STATS,
        SAMPLES,
        CANDIDATES,
        CHAINS,
        CANDIDATE_EVIDENCE,
        REASONING_TRACES,
        SFT_EXAMPLES,
        RL_PROMPTS,
        SERVE_CANDIDATES,
        SCORE_CHUNKS,
        RECOMMENDATIONS,
        BACKTEST_METRICS,
        EVAL_METRICS,
        EVAL_OUTCOMES,
        MODEL_REGISTRY,
        MODEL_PROMOTIONS,
    )
}


def get_table(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        known = ", ".join(sorted(TABLES))
        raise R2RecError(f"unknown table '{name}' (known: {known})") from None
