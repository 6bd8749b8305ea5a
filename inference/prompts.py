"""Protocol samples as prompts, for every ranker that reads a prompt (LLM, evidence)."""

from __future__ import annotations

from collections.abc import Sequence

from inference.engine import Candidate, ScoreRequest
from inference.ranking import EvalSample, Ranking
from r2rec.catalog import item_text, items_as_of
from r2rec.evidence import load_evidence
from r2rec.lakehouse import Lakehouse
from r2rec.prompt import build_prompt


class SamplePrompts:
    """Protocol samples as prompts: the prompt contract's build step over ids, item texts
    as of D and the samples' evidence (scope ``samples``), exactly as traces build them."""

    def __init__(self, lakehouse: Lakehouse, ds: str, evidence: str = "chains", texts: bool = True):
        # Without texts, items show by id: enough for anything that only orders evidence.
        self.items = items_as_of(lakehouse, ds) if texts else {}
        self.lakehouse, self.ds, self.mode = lakehouse, ds, evidence
        self._evidence: dict = {}

    def item(self, item_id: str):
        return item_text(self.items, item_id)

    def prepare(self, samples: Sequence[EvalSample]) -> None:
        """Read the evidence of these samples (only theirs reach Python)."""
        if self.mode != "none":
            ids = {s.sample_id for s in samples}
            self._evidence = load_evidence(self.lakehouse, self.ds, "samples", ids)

    def requests(self, keyed: Sequence[tuple[str, EvalSample]]) -> list[ScoreRequest]:
        out = []
        for key, s in keyed:
            prompt, flags = build_prompt(
                s.history, s.candidates, s.labels, self.item,
                self._evidence.get(s.sample_id, {}), self.mode,
            )  # fmt: skip
            candidates = tuple(
                Candidate(label, i, text)
                for (label, text), i in zip(prompt.candidates, s.candidates, strict=True)
            )
            out.append(ScoreRequest(key, prompt, candidates, tuple(flags)))
        return out


class EvidenceRanker:
    """Candidates ranked by their evidence alone, no LLM: the order the prompt shows them
    in (strongest evidence first), then the candidates without evidence in display order.

    What the model's reasoning adds beyond its inputs is its difference to this ranker.
    """

    name = "evidence"

    def __init__(self, lakehouse: Lakehouse, ds: str):
        self.prompts = SamplePrompts(lakehouse, ds, "chains", texts=False)
        self.detail = {
            "order": "evidence score (similar users' overlap x the shared history items' "
            "cosine terms, the recent ones and those chosen close to the candidate "
            "weighted more, per sqrt audience), users, "
            "display order"
        }

    def rank(self, samples: Sequence[EvalSample]) -> list[Ranking]:
        out = []
        self.prompts.prepare(samples)
        keyed = [(f"{s.sample_id}#{s.seed}", s) for s in samples]
        for s, request in zip(samples, self.prompts.requests(keyed), strict=True):
            by_label = dict(zip(s.labels, s.candidates, strict=True))
            strong = request.prompt.evidence_order()
            order = strong + [lb for lb in s.labels if lb not in strong]
            out.append(Ranking(s.sample_id, s.seed, [by_label[lb] for lb in order]))
        return out
