"""r2rec.sql: DuckDB queries must see exactly the Delta snapshot, never stale files."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pytest
from deltalake import write_deltalake

from r2rec.errors import R2RecError
from r2rec.lakehouse import Lakehouse
from r2rec.sql import connect, run_sql, table_uris


def test_overwritten_partition_is_not_read_twice(lakehouse, write_partition):
    write_partition(["a", "b", "c"])
    write_partition(["x"])
    # The first write's file is still on disk: a raw Parquet scan would count 4 rows.
    table_dir = Path(lakehouse.uri("interactions"))
    assert len(list(table_dir.rglob("*.parquet"))) == 2
    assert pads.dataset(table_dir, format="parquet", partitioning="hive").count_rows() == 4

    result = run_sql("SELECT count(*) AS n, min(user_id) AS u FROM interactions", lakehouse)

    assert result.to_pylist() == [{"n": 1, "u": "x"}]


def test_group_by_returns_exact_rows(lakehouse, write_partition):
    write_partition(["a", "b", "a", "c", "a", "b"])
    write_partition(["c", "d"], ds="2026-01-02")

    result = run_sql(
        "SELECT user_id, count(*) AS n, sum(rating) AS r FROM interactions "
        "GROUP BY user_id ORDER BY n DESC, user_id",
        lakehouse,
    )

    assert result.to_pylist() == [
        {"user_id": "a", "n": 3, "r": 0.0 + 2.0 + 4.0},
        {"user_id": "b", "n": 2, "r": 1.0 + 5.0},
        {"user_id": "c", "n": 2, "r": 3.0 + 0.0},
        {"user_id": "d", "n": 1, "r": 1.0},
    ]


def test_timestamps_come_back_in_utc(lakehouse, write_partition):
    write_partition(["a"])

    result = run_sql("SELECT ts FROM interactions", lakehouse)

    assert result.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert result.column("ts").to_pylist() == [datetime(2025, 12, 31, 12, 0, tzinfo=UTC)]


def test_time_travel_reads_the_old_version(lakehouse, write_partition):
    old = write_partition(["a", "b", "c"])
    new = write_partition(["x"])
    query = "SELECT count(*) AS n FROM interactions"

    assert (old, new) == (1, 2)
    assert run_sql(query, lakehouse, version={"interactions": old}).to_pylist() == [{"n": 3}]
    assert run_sql(query, lakehouse, version={"interactions": new}).to_pylist() == [{"n": 1}]
    assert run_sql(query, lakehouse).to_pylist() == [{"n": 1}]


def test_join_across_tables(lakehouse, write_partition):
    write_partition(["a", "b"])
    items = pa.table(
        {
            "item_id": ["i0", "i1"],
            "title": ["Heat", "Up"],
            "year": pa.array([1995, 2009], pa.int32()),
            "genres": [["Crime"], ["Animation", "Comedy"]],
            "text": ["Heat (1995)", "Up (2009)"],
            "ds": ["2026-01-01"] * 2,
            "source": ["test"] * 2,
        }
    )
    lakehouse.overwrite("items", items, partition={"ds": "2026-01-01", "source": "test"})

    result = run_sql(
        "SELECT i.user_id, t.title, len(t.genres) AS g FROM interactions i "
        "JOIN items t USING (item_id) ORDER BY i.user_id",
        lakehouse,
    )

    assert result.to_pylist() == [
        {"user_id": "a", "title": "Heat", "g": 1},
        {"user_id": "b", "title": "Up", "g": 2},
    ]


def test_limit_stops_after_n_rows_in_order(lakehouse):
    result = run_sql("SELECT range AS k FROM range(100000) ORDER BY k DESC", lakehouse, limit=3)

    assert result.column("k").to_pylist() == [99999, 99998, 99997]


def test_statement_without_result_gives_empty_table(lakehouse):
    # Not SET any more: settings are locked. A scratch view lives in memory only.
    assert run_sql("CREATE VIEW scratch AS SELECT 1 AS k", lakehouse).num_rows == 0


def test_other_delta_tables_under_the_root_are_queryable(lakehouse, write_partition):
    write_partition(["a"])
    write_deltalake(f"{lakehouse.root}/scratch", pa.table({"k": [1, 2, 3]}))
    (Path(lakehouse.root) / "not_a_table").mkdir()
    (Path(lakehouse.root) / "results.log").write_text("a run's log beside the tables\n")

    assert sorted(table_uris(lakehouse)) == ["interactions", "scratch"]
    assert run_sql("SELECT sum(k) AS s FROM scratch", lakehouse).to_pylist() == [{"s": 6}]


def test_connect_registers_one_view_per_table(lakehouse, write_partition):
    write_partition(["a", "b"])
    con = connect(lakehouse)
    try:
        views = con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        count = con.sql("SELECT count(*) FROM interactions").fetchall()
    finally:
        con.close()

    assert views == [("interactions",)]
    assert count == [(2,)]


def test_default_lakehouse_comes_from_the_environment(lakehouse, write_partition, monkeypatch):
    write_partition(["a", "b"])
    monkeypatch.setenv("R2REC_LAKEHOUSE", lakehouse.root)

    assert run_sql("SELECT count(*) AS n FROM interactions").to_pylist() == [{"n": 2}]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELEC broken", 'Parser Error: syntax error at or near "SELEC"'),
        ("SELECT nope FROM interactions", 'Binder Error: Referenced column "nope" not found'),
        (
            "SELECT * FROM interaction",
            "Catalog Error: Table with name interaction does not exist! "
            "(available tables: interactions)",
        ),
    ],
)
def test_duckdb_errors_become_one_line_r2rec_errors(lakehouse, write_partition, query, expected):
    write_partition(["a"])

    with pytest.raises(R2RecError) as err:
        run_sql(query, lakehouse)

    message = str(err.value)
    assert message.startswith(expected)
    assert "\n" not in message
    assert "LINE 1" not in message
    assert "Did you mean" not in message


def test_missing_table_in_empty_lakehouse_says_so(tmp_path):
    with pytest.raises(R2RecError, match=r"does not exist! \(the lakehouse has no tables\)$"):
        run_sql("SELECT * FROM interactions", Lakehouse(str(tmp_path / "empty")))


def test_time_travel_errors(lakehouse, write_partition):
    write_partition(["a"])

    with pytest.raises(R2RecError, match=r"cannot time-travel items: no such table"):
        run_sql("SELECT 1", lakehouse, version={"items": 0})
    with pytest.raises(R2RecError, match=r"cannot read version 7 of table 'interactions'"):
        run_sql("SELECT 1", lakehouse, version={"interactions": 7})


# --- confinement: the views and nothing else ----------------------------------------


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", 'Cannot access file "/etc/passwd"'),
        ("SELECT * FROM read_text('/etc/hostname')", 'Cannot access file "/etc/hostname"'),
        ("SELECT * FROM '{table}/*.parquet'", "file system operations are disabled"),
        ("COPY (SELECT 1 AS k) TO '{tmp}/out.csv'", "file system operations are disabled"),
        # The forged commit that once emptied a table: a remove action for every file.
        ("COPY (SELECT 'x' AS remove) TO '{table}/_delta_log/00000000000000000099.json'",
         "file system operations are disabled"),
        ("EXPORT DATABASE '{tmp}/export'", "file system operations are disabled"),
        ("ATTACH '{tmp}/other.duckdb' AS other", "file system operations are disabled"),
        ("INSTALL delta", "file system operations are disabled"),
        ("LOAD delta", "Loading external extensions is disabled"),
        ("SET threads = 1", 'Cannot change configuration option "threads"'),
        ("SET enable_external_access = true", "the configuration has been locked"),
        ("RESET lock_configuration", "the configuration has been locked"),
        ("SELECT 1; SET TimeZone = 'Europe/Berlin'", "the configuration has been locked"),
    ],
)  # fmt: skip
def test_queries_cannot_touch_files_extensions_or_settings(
    lakehouse, write_partition, tmp_path, query, fragment
):
    write_partition(["a", "b"])
    table = lakehouse.uri("interactions")
    before = _files(tmp_path)

    with pytest.raises(R2RecError) as err:
        run_sql(query.format(table=table, tmp=tmp_path), lakehouse)

    message = str(err.value)
    assert fragment in message
    assert message.endswith(
        "(r2rec sql only reads the lakehouse's tables: no files, extensions or settings)"
    )
    assert "\n" not in message
    assert _files(tmp_path) == before  # nothing written, not even an empty file
    assert run_sql("SELECT count(*) AS n FROM interactions", lakehouse).to_pylist() == [{"n": 2}]


def test_a_query_cannot_see_python_objects_in_scope(lakehouse, write_partition):
    # DuckDB's replacement scans would otherwise read any Arrow/pandas object by name.
    write_partition(["a"])

    with pytest.raises(R2RecError, match="Table with name lakehouse does not exist"):
        run_sql("SELECT * FROM lakehouse", lakehouse)


def test_views_time_travel_and_utc_still_work_on_the_locked_connection(lakehouse, write_partition):
    write_partition(["a", "b", "c"])
    write_partition(["x"])
    con = connect(lakehouse, {"interactions": 1})
    try:
        settings = dict(
            con.sql(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('enable_external_access', 'lock_configuration', 'TimeZone')"
            ).fetchall()
        )
        count = con.sql("SELECT count(*) FROM interactions").fetchall()
    finally:
        con.close()

    assert settings == {
        "enable_external_access": "false",
        "lock_configuration": "true",
        "TimeZone": "UTC",
    }
    assert count == [(3,)]


# --- every documented query still works ---------------------------------------------

DEMO_DS = "2026-11-25"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_lake(lakehouse, write_partition):
    """A few rows in every table the README's and `make demo`'s queries read."""
    from r2rec.contracts import (
        EVAL_METRICS,
        JOB_METRICS,
        JOB_RUNS,
        MODEL_PROMOTIONS,
        MODEL_REGISTRY,
        QUARANTINE,
        RECOMMENDATIONS,
    )

    write_partition(["a", "b", "c"])  # version 1: what --as-of interactions=1 reads
    write_partition(["x"])
    ds, src = DEMO_DS, "movielens-100k"
    lakehouse.append(QUARANTINE, [
        {"ds": ds, "job": "ingest", "source": src, "entity": "interaction", "source_file": "u",
         "line_number": n, "raw_record": "?", "reason": reason, "detail": None}
        for n, reason in enumerate(["unparseable", "bad_rating", "unparseable"])
    ])  # fmt: skip
    lakehouse.append(JOB_METRICS, [
        {"ds": ds, "job": job, "metric": metric, "value": value, "detail": None}
        for job, metric, value in [("chains", "chain_coverage", 0.75), ("chains", "chains", 12.0),
                                   ("samples", "samples.train", 40.0), ("graph", "users", 4.0)]
    ])  # fmt: skip
    items = [
        {"item_id": f"i{k}", "title": f"Movie {k}", "year": 1995, "genres": ["Drama"],
         "text": "t", "ds": ds, "source": src}
        for k in range(1, 5)
    ]  # fmt: skip
    lakehouse.overwrite("items", items, partition={"ds": ds, "source": src})
    lakehouse.append(RECOMMENDATIONS, [
        {"ds": ds, "mode": "serve", "user_id": f"u{u}", "sample_id": None, "rank": r,
         "item_id": f"i{r}", "label": f"C{r}", "score": math.log(1 / (r + 1)),
         "reasoning": f"u{u} liked i{r}'s neighbours", "answer_valid": r != 4, "errors": [],
         "history_truncated": False, "model_version": "m@1", "prompt_version": "p1",
         "run_id": "score-1", "evidence": "chains", "prompt_flags": [],
         "reasoning_names_top": True, "reasoning_grounded": r != 4, "reasoning_no_repeat": True}
        for u in range(1, 5)
        for r in range(1, 5)
    ])  # fmt: skip
    # As evaluate writes them: the baselines on every sample (`all`) and, like the LLMs, on
    # the LLM's sample subset (`hash-40`); a champion, a rejected candidate, the base model.
    lakehouse.append(EVAL_METRICS, [
        {"ds": ds, "model": model, "split": split, "protocol": "sampled", "subset": subset,
         "seed": seed, "metric": metric, "value": value, "ci_low": None, "ci_high": None,
         "samples": samples, "run_id": "eval-1", "detail": None}
        for model, subset, samples, hr1 in (
            ("popularity", "all", 400, 0.2), ("popularity", "hash-40", 40, 0.25),
            ("llm:m@1", "hash-40", 40, 0.5), ("llm:m@2", "hash-40", 40, 0.1),
            ("llm:base:smollm2", "hash-40", 40, 0.05))
        for split in ("valid", "test")
        for seed in (None, 0)
        for metric, value in (("hr@1", hr1), ("valid_ratio", 1.0), ("ndcg@5", hr1 / 2))
    ])  # fmt: skip
    at = datetime(2026, 11, 25, 6, tzinfo=UTC)
    lakehouse.append(MODEL_REGISTRY, [
        {"model_version": f"m@{k}", "run_id": f"{stage}-1", "ds": ds, "stage": stage,
         "base_model": "smollm2", "base_version": "b@1", "model_path": "/m",
         "adapter_path": "/a", "parent_version": None, "run_dir": "/r", "manifest": manifest,
         "status": status, "valid_hr1": hr1, "metrics": None, "eval_samples": 8,
         "registered_at": at.replace(hour=5 + k)}
        for k, stage, status, hr1, manifest in [
            (1, "sft", "champion", 0.5, '{"global_step": 24, "train_runtime_s": 61.6}'),
            (2, "grpo", "rejected", 0.25, '{"global_step": 2, "train_runtime_s": 180.2}'),
        ]
    ])  # fmt: skip
    lakehouse.append(MODEL_PROMOTIONS, [
        {"ds": ds, "candidate_version": f"m@{k}", "champion_version": champion,
         "candidate_valid_hr1": hr1, "champion_valid_hr1": champion_hr1, "candidate_samples": 8,
         "champion_samples": 8, "min_gain": 0.0, "decision": decision, "reason": reason,
         "decided_at": at.replace(hour=5 + k)}
        for k, champion, hr1, champion_hr1, decision, reason in [
            (1, None, 0.5, None, "promoted", "first champion"),
            (2, "m@1", 0.25, 0.5, "rejected", "hr@1 fell"),
        ]
    ])  # fmt: skip
    as_map = lambda versions: list(versions.items()) if versions else None  # noqa: E731
    lakehouse.append(JOB_RUNS, pa.Table.from_pylist([
        {"ds": day, "job": job, "run_id": f"{job}-{day}", "status": status,
         "started_at": start, "ended_at": start + timedelta(seconds=secs), "elapsed_s": secs,
         "inputs": as_map(inputs), "outputs": as_map(outputs), "config": "[]", "report": None,
         "error": error,
         "git_commit": "abc123", "host": "h", "pid": 1, "peak_rss_mb": mib,
         "jvm_peak_rss_mb": jvm}
        for day, job, status, start, secs, inputs, outputs, error, mib, jvm in [
            (ds, "graph", "success", at.replace(hour=1), 48.2, {"interactions": 2},
             {"graph_edges": 3, "graph_stats": 3}, None, 207.0, 930.0),
            (ds, "samples", "failed", at.replace(hour=2), 41.0, {"interactions": 2, "items": 1},
             None, "data-quality check failed: samples_unique", 310.0, 1200.0),
            ("2026-11-24", "graph", "success", at.replace(day=24, hour=1), 52.0,
             {"interactions": 1}, {"graph_edges": 2, "graph_stats": 2}, None, 205.0, 1010.0),
            ("2026-11-18", "graph", "success", at.replace(day=18, hour=1), 99.0,
             {"interactions": 0}, {"graph_edges": 1, "graph_stats": 1}, None, 999.0, 999.0),
        ]
    ], JOB_RUNS.arrow_schema()))  # fmt: skip
    return lakehouse


def _p(rank: int) -> float:
    return round(1 / (rank + 1), 3)  # demo_lake's label probability at each rank


# Each documented query (README "Querying", `make demo`), with the rows demo_lake gives.
DOCUMENTED = {
    "SELECT reason, count(*) FROM quarantine GROUP BY reason":
        [["unparseable", 2], ["bad_rating", 1]],
    "SELECT metric, value FROM job_metrics WHERE job = 'chains'":
        [["chain_coverage", 0.75], ["chains", 12.0]],
    "SELECT count(*) FROM interactions": [[3]],  # with --as-of interactions=1
    "SELECT r.user_id, r.rank, i.title, round(exp(r.score), 3) AS p_label, r.answer_valid, "
    "CASE WHEN r.rank = 1 THEN r.reasoning END AS reasoning FROM recommendations r JOIN items i "
    "ON i.item_id = r.item_id AND i.ds = r.ds WHERE r.ds = '2026-11-25' AND r.mode = 'serve' "
    "AND r.rank <= 3 ORDER BY r.user_id, r.rank":
        [[f"u{u}", r, f"Movie {r}", _p(r), True, f"u{u} liked i1's neighbours" if r == 1 else None]
         for u in range(1, 5) for r in range(1, 4)],
    "SELECT model, split, subset, value AS hr1 FROM eval_metrics WHERE ds = '2026-11-25' AND "
    "metric = 'hr@1' AND protocol = 'sampled' AND seed IS NULL ORDER BY split, subset, hr1 DESC":
        [[model, split, subset, hr1] for split in ("test", "valid")
         for model, subset, hr1 in (("popularity", "all", 0.2), ("llm:m@1", "hash-40", 0.5),
                                    ("popularity", "hash-40", 0.25), ("llm:m@2", "hash-40", 0.1),
                                    ("llm:base:smollm2", "hash-40", 0.05))],
    "SELECT job, metric, value FROM job_metrics WHERE ds = '2026-11-25' AND job IN ('samples', "
    "'chains', 'traces.template') AND metric IN ('chain_coverage', 'chains', 'samples.train', "
    "'samples.valid', 'samples.test', 'template.traces', 'template.pass_rate', 'sft_examples', "
    "'rl_prompts')":
        [["chains", "chain_coverage", 0.75], ["chains", "chains", 12.0],
         ["samples", "samples.train", 40.0]],
    "SELECT r.user_id, r.rank, i.title, round(r.score, 3) AS logprob, r.answer_valid FROM "
    "recommendations r JOIN items i ON i.item_id = r.item_id AND i.ds = r.ds WHERE r.ds = "
    "'2026-11-25' AND r.mode = 'serve' AND r.rank <= 3 AND r.user_id IN (SELECT DISTINCT user_id "
    "FROM recommendations WHERE ds = '2026-11-25' AND mode = 'serve' ORDER BY user_id LIMIT 3) "
    "ORDER BY r.user_id, r.rank":
        [[f"u{u}", r, f"Movie {r}", {1: -0.693, 2: -1.099, 3: -1.386}[r], True]
         for u in range(1, 4) for r in range(1, 4)],
    "SELECT user_id, model_version, reasoning FROM recommendations WHERE ds = '2026-11-25' AND "
    "mode = 'serve' AND rank = 1 ORDER BY user_id LIMIT 3":
        [[f"u{u}", "m@1", f"u{u} liked i1's neighbours"] for u in range(1, 4)],
    "SELECT CASE WHEN r.stage IS NOT NULL THEN 'llm ' || r.stage || ' (' || r.status || ')' "
    "WHEN e.model LIKE 'llm:%' THEN 'llm untuned base' ELSE e.model END AS model, e.split, "
    "max(CASE WHEN e.metric = 'hr@1' THEN round(e.value, 3) END) AS hr1, "
    "max(CASE WHEN e.metric = 'valid_ratio' THEN round(e.value, 3) END) AS valid_ratio, "
    "max(CASE WHEN e.metric = 'ndcg@5' THEN round(e.value, 3) END) AS ndcg5, "
    "max(e.samples) AS samples FROM eval_metrics e LEFT JOIN model_registry r ON e.model = "
    "'llm:' || r.model_version WHERE e.ds = '2026-11-25' AND e.protocol = 'sampled' AND "
    "e.seed IS NULL AND e.subset = 'hash-40' GROUP BY 1, e.split ORDER BY e.split, hr1 DESC":
        [[model, split, hr1, 1.0, round(hr1 / 2, 3), 40] for split in ("test", "valid")
         for model, hr1 in (("llm sft (champion)", 0.5), ("popularity", 0.25),
                            ("llm grpo (rejected)", 0.1), ("llm untuned base", 0.05))],
    "SELECT stage, run_id, status, round(valid_hr1, 3) AS valid_hr1, eval_samples, "
    "json_extract_string(manifest, '$.global_step') AS steps, "
    "round(CAST(json_extract_string(manifest, '$.train_runtime_s') AS DOUBLE)) AS train_s "
    "FROM model_registry ORDER BY registered_at":
        [["sft", "sft-1", "champion", 0.5, 8, "24", 62.0],
         ["grpo", "grpo-1", "rejected", 0.25, 8, "2", 180.0]],
    "SELECT r.stage, p.decision, p.reason FROM model_promotions p JOIN model_registry r ON "
    "r.model_version = p.candidate_version ORDER BY p.decided_at":
        [["sft", "promoted", "first champion"], ["grpo", "rejected", "hr@1 fell"]],
    "SELECT job, status, started_at, round(elapsed_s) AS seconds, inputs, outputs, git_commit, "
    "error FROM job_runs WHERE ds = '2026-11-25' ORDER BY started_at":
        [["graph", "success", "2026-11-25T01:00:00+00:00", 48.0, {"interactions": 2},
          {"graph_edges": 3, "graph_stats": 3}, "abc123", None],
         ["samples", "failed", "2026-11-25T02:00:00+00:00", 41.0, {"interactions": 2, "items": 1},
          None, "abc123", "data-quality check failed: samples_unique"]],
    "SELECT job, count(*) AS runs, max(elapsed_s) AS max_seconds, max(peak_rss_mb) AS max_mib, "
    "max(jvm_peak_rss_mb) AS max_jvm_mib, count(*) FILTER (WHERE status = 'failed') AS failed FROM "
    "job_runs WHERE ds >= '2026-11-19' GROUP BY job ORDER BY max_seconds DESC":
        [["graph", 2, 52.0, 207.0, 1010.0, 0], ["samples", 1, 41.0, 310.0, 1200.0, 1]],
}  # fmt: skip


def _documented_queries() -> list[str]:
    """The DuckDB queries README.md ("Querying", "Operating it") and `make demo` show."""
    text = (ROOT / "README.md").read_text()
    readme = text.split("## Querying", 1)[1]
    readme = readme.split("Spark SQL", 1)[0]  # the Spark SQL example is not DuckDB
    readme += text.split("## Operating it", 1)[1].split("\n## ", 1)[0]
    queries = re.findall(r'^r2rec sql "([^"]+)"', readme, re.M)
    for block in re.findall(r"```sql\n(.*?)```", readme, re.S):
        lines = [ln for ln in block.splitlines() if not ln.lstrip().startswith("--")]
        queries += [q for q in "\n".join(lines).split(";") if q.strip()]
    demo = (ROOT / "Makefile").read_text().replace("\\\n", " ").split("\ndemo:", 1)[1]
    demo = demo.split("\n\n", 1)[0].replace("$(DEMO_DS)", DEMO_DS).replace("$$", "$")
    demo = demo.replace("$(DEMO_EVAL_SAMPLES)", "40")  # the subset demo_lake's rows are on
    queries += re.findall(r'r2rec sql "([^"]+)"', demo)
    return [" ".join(q.split()) for q in queries]


def test_every_documented_query_is_tested_here():
    documented = _documented_queries()

    # Both ways: a query the docs dropped is not tested for nothing, and the extraction
    # still finds every query the docs show.
    assert sorted(set(documented)) == sorted(DOCUMENTED)


@pytest.mark.parametrize("query", sorted(DOCUMENTED))
def test_documented_query_gives_its_rows_through_the_cli(demo_lake, query):
    import json

    from typer.testing import CliRunner

    from r2rec.cli import app

    as_of = ["--as-of", "interactions=1"] if query == "SELECT count(*) FROM interactions" else []
    args = ["sql", query, *as_of, "--format", "json", "--limit", "0", "-L", demo_lake.root]
    result = CliRunner(env={"R2REC_LAKEHOUSE": None}).invoke(app, args)

    assert result.exit_code == 0, result.output
    rows = [list(row.values()) for row in json.loads(result.stdout)]
    expected = DOCUMENTED[query]
    if "ORDER BY" not in query:
        rows, expected = sorted(rows), sorted(expected)
    assert rows == expected
