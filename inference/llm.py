"""The LLM as a ranker for evaluation: the same engine and prompts as nightly scoring."""

from __future__ import annotations

from collections.abc import Sequence

from inference.engine import Candidate, LLMScorer, ScoreRequest
from inference.ranking import EvalSample, Ranking
from r2rec.catalog import item_text, items_as_of
from r2rec.lakehouse import Lakehouse
from r2rec.prompt import MAX_COMPLETION_TOKENS


class LLMRanker:
    """Ranks protocol samples with :class:`LLMScorer`; ``name`` is ``llm:<model version>``."""

    def __init__(
        self,
        lakehouse: Lakehouse,
        ds: str,
        model: str | None = None,
        adapter: str | None = None,
        max_new_tokens: int = MAX_COMPLETION_TOKENS,
        batch_size: int = 256,
    ):
        self.items = items_as_of(lakehouse, ds)
        self.scorer = LLMScorer(model, adapter, max_new_tokens=max_new_tokens)
        self.name = f"llm:{self.scorer.version}"
        # Recorded with the metrics: a budget below the trace length scores ValidRatio 0.
        self.detail = {"max_new_tokens": max_new_tokens}
        self.batch_size = batch_size

    def _request(self, key: str, sample: EvalSample) -> ScoreRequest:
        return ScoreRequest(
            key,
            tuple(item_text(self.items, i).text for i in sample.history),
            tuple(
                Candidate(label, i, item_text(self.items, i).text)
                for label, i in zip(sample.labels, sample.candidates, strict=True)
            ),
        )

    def rank(self, samples: Sequence[EvalSample]) -> list[Ranking]:
        out: list[Ranking] = []
        for start in range(0, len(samples), self.batch_size):
            batch = samples[start : start + self.batch_size]
            keys = [f"{s.sample_id}#{s.seed}" for s in batch]
            scored = self.scorer.score(
                [self._request(k, s) for k, s in zip(keys, batch, strict=True)]
            )
            for s, result in zip(batch, scored, strict=True):
                out.append(
                    Ranking(
                        s.sample_id,
                        s.seed,
                        [c.item_id for c, _ in result.ranked],
                        answer_valid=result.answer_valid,
                        scores=[v for _, v in result.ranked],
                    )
                )
        return out
