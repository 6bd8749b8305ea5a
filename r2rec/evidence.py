"""Reading candidate evidence for prompts: the one loader traces, scoring and evaluation use.

The evidence job (spark_jobs/evidence.py) writes ``candidate_evidence`` per (ds, scope);
prompts need, per context (a sample, or a user when serving), the evidence row of each
of its candidates. Only the columns a prompt shows are read, and only the contexts
asked for reach Python.
"""

from __future__ import annotations

from collections.abc import Iterable

from r2rec.contracts import CANDIDATE_EVIDENCE
from r2rec.errors import R2RecError

_COLUMNS = ["context_id", "item_id", "users", "overlap", "score", "via"]

Rows = dict[str, dict[str, dict]]  # context_id -> item_id -> {users, overlap, score, via}


def load_evidence(lakehouse, ds: str, scope: str, contexts: Iterable[str] | None = None) -> Rows:
    """Evidence rows of (ds, scope), by context and candidate; a missing row = no evidence.

    Fails when the evidence job has not run for (ds, scope): prompts built without it
    would silently differ from the ones the model was trained on.
    """
    return evidence_rows(evidence_table(lakehouse, ds, scope, contexts, sort=False))


def evidence_table(lakehouse, ds: str, scope: str, contexts=None, sort: bool = True):
    """``load_evidence``'s rows as one Arrow table, sorted by context id for a caller that
    takes them a slice at a time (:func:`evidence_rows`); ``contexts``: ids, or an Arrow
    array of them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    part = [("ds", "=", ds), ("scope", "=", scope)]
    if not lakehouse.exists(CANDIDATE_EVIDENCE) or not any(
        p == {"ds": ds, "scope": scope} for p in lakehouse.partitions(CANDIDATE_EVIDENCE)
    ):
        raise R2RecError(
            f"no candidate_evidence for ds={ds}, scope={scope}: run "
            f"`r2rec evidence --ds {ds} --scope {scope}` first (or use --evidence none)"
        )
    table = lakehouse.read_arrow(CANDIDATE_EVIDENCE, partitions=part, columns=_COLUMNS)
    if contexts is not None:
        if isinstance(contexts, pa.ChunkedArray):
            contexts = contexts.combine_chunks()
        wanted = contexts if isinstance(contexts, pa.Array) else _strings(contexts)
        table = table.filter(pc.is_in(table["context_id"], value_set=wanted))
    return table.sort_by("context_id") if sort else table


def evidence_rows(table) -> Rows:
    """Arrow evidence rows (``_COLUMNS``) as context -> candidate -> row."""
    out: Rows = {}
    for row in table.to_pylist():
        out.setdefault(row.pop("context_id"), {})[row.pop("item_id")] = row
    return out


def _strings(values: Iterable[str]):
    import pyarrow as pa

    return pa.array(sorted(set(values)), pa.string())
