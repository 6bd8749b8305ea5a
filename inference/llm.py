"""The LLM as a ranker for evaluation: the same engine and prompts as nightly scoring."""

from __future__ import annotations

from collections.abc import Sequence

from inference.engine import LLMScorer
from inference.prompts import SamplePrompts
from inference.ranking import EvalSample, Ranking
from r2rec.lakehouse import Lakehouse
from r2rec.progress import Progress
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
        batch_size: int = 128,
        evidence: str = "chains",
        registered: str | None = None,
    ):
        self.prompts = SamplePrompts(lakehouse, ds, evidence)
        self.scorer = LLMScorer(
            model, adapter, max_new_tokens=max_new_tokens, registered=registered
        )
        self.name = f"llm:{self.scorer.version}"
        # Recorded with the metrics: a budget below the trace length scores ValidRatio 0.
        self.detail = {
            "max_new_tokens": max_new_tokens,
            "evidence": evidence,
            "dtype": self.scorer.dtype,
        }
        self.batch_size = batch_size

    def rank(self, samples: Sequence[EvalSample]) -> list[Ranking]:
        out: list[Ranking] = []
        self.prompts.prepare(samples)
        with Progress(f"evaluate {self.name}", len(samples), "rankings") as progress:
            for start in range(0, len(samples), self.batch_size):
                batch = samples[start : start + self.batch_size]
                keyed = [(f"{s.sample_id}#{s.seed}", s) for s in batch]
                scored = self.scorer.score(self.prompts.requests(keyed))
                for s, result in zip(batch, scored, strict=True):
                    out.append(
                        Ranking(
                            s.sample_id,
                            s.seed,
                            [c.item_id for c, _ in result.ranked],
                            answer_valid=result.answer_valid,
                            scores=[v for _, v in result.ranked],
                            checks=dict(result.checks),
                        )
                    )
                progress.advance(len(batch))
        return out
