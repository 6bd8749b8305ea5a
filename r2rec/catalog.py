"""Item text as of a run date: what every prompt (traces, training, scoring) shows for an item."""

from __future__ import annotations

from dataclasses import dataclass

from r2rec.contracts import ITEMS


@dataclass(frozen=True)
class ItemText:
    item_id: str
    text: str  # e.g. "Fargo (1996). Genres: Crime, Drama, Thriller"
    genres: tuple[str, ...] = ()


def items_as_of(lakehouse, ds: str) -> dict[str, ItemText]:
    """The latest version of every item ingested on or before D."""
    latest: dict[str, tuple[str, ItemText]] = {}
    for row in lakehouse.read_arrow(ITEMS, partitions=[("ds", "<=", ds)]).to_pylist():
        known = latest.get(row["item_id"])
        if known is None or known[0] <= row["ds"]:
            text = row["text"] or row["title"] or row["item_id"]
            latest[row["item_id"]] = (
                row["ds"],
                ItemText(row["item_id"], text, tuple(row["genres"] or ())),
            )
    return {item_id: item for item_id, (_, item) in latest.items()}


def item_text(items: dict[str, ItemText], item_id: str) -> ItemText:
    # An item with interactions but no metadata row still gets a citable text.
    return items.get(item_id) or ItemText(item_id, f"item {item_id}")
