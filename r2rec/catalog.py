"""Item text as of a run date: what every prompt (traces, training, scoring) shows for an item."""

from __future__ import annotations

from dataclasses import dataclass

from r2rec.contracts import ITEMS


@dataclass(frozen=True)
class ItemText:
    item_id: str
    text: str  # e.g. "Fargo (1996). Genres: Crime, Drama, Thriller"
    genres: tuple[str, ...] = ()
    title: str | None = None
    year: int | None = None

    @property
    def display(self) -> str:
        """'Fargo (1996)': the title and year, without the genres of ``text``."""
        if not self.title:
            return self.text
        return f"{self.title} ({self.year})" if self.year else self.title

    @property
    def short(self) -> str:
        """'Fargo': what prompts show. Genres cost ~10 tokens an item and a year ~7 (each
        digit is a token), thirty items a prompt, for little a small model can use next
        to the evidence; prompts fall back to ``display`` where two titles collide."""
        return self.title or self.text


_COLUMNS = ["item_id", "title", "year", "genres", "text", "ds"]


def items_as_of(lakehouse, ds: str) -> dict[str, ItemText]:
    """The latest version of every item ingested on or before D.

    Only the latest row per item reaches Python: the scan stays columnar (Arrow) until
    then, however many dates have re-ingested the catalogue.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = lakehouse.read_arrow(ITEMS, partitions=[("ds", "<=", ds)], columns=_COLUMNS)
    if table.num_rows == 0:
        return {}
    table = table.take(pc.sort_indices(table, [("item_id", "ascending"), ("ds", "descending")]))
    ids = table["item_id"]
    first = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))
    table = table.filter(pa.concat_arrays([pa.array([True]), first.combine_chunks()]))
    out: dict[str, ItemText] = {}
    for row in table.to_pylist():
        text = row["text"] or row["title"] or row["item_id"]
        out[row["item_id"]] = ItemText(
            row["item_id"], text, tuple(row["genres"] or ()), row["title"], row["year"]
        )
    return out


def item_text(items: dict[str, ItemText], item_id: str) -> ItemText:
    # An item with interactions but no metadata row still gets a citable text.
    return items.get(item_id) or ItemText(item_id, f"item {item_id}")
