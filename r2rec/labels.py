"""Candidate labels as the model writes them: exact label log-probabilities after a prefix.

Scoring (``inference.engine``) ranks candidates by them and GRPO's target-likelihood
reward (``trainer.rollout``) rewards the target's share of them, so both read the same
tokens the same way. The engine that computes a next-token distribution is the caller's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from r2rec.prompt import ANSWER_OPEN

NextLogprobs = Callable[[list[list[int]], list[list[int]]], list[dict[int, float]]]
"""(prompts as token ids, each prompt's allowed next tokens) -> for each prompt, the
log-probability of each allowed next token."""


class LabelTrie:
    """The candidate labels' deciding tokens as a trie, for exact label log-probabilities.

    A label's deciding tokens are its shortest token prefix that no other label shares
    (its whole sequence if another label extends it entirely).
    """

    def __init__(self, label_tokens: dict[str, Sequence[int]]):
        full = {label: tuple(tokens) for label, tokens in label_tokens.items()}
        if len(set(full.values())) != len(full):
            raise ValueError("two labels have the same tokens")
        self.labels: dict[str, tuple[int, ...]] = {}
        for label, tokens in full.items():
            others = [t for x, t in full.items() if x != label]
            depth = next(
                (d for d in range(1, len(tokens) + 1)
                 if not any(t[:d] == tokens[:d] for t in others)),
                len(tokens),
            )  # fmt: skip
            self.labels[label] = tokens[:depth]
        self._named = {tokens: label for label, tokens in self.labels.items()}
        self.children: dict[tuple[int, ...], set[int]] = {}
        for tokens in self.labels.values():
            for depth in range(len(tokens)):
                self.children.setdefault(tokens[:depth], set()).add(tokens[depth])

    def nodes(self) -> list[tuple[tuple[int, ...], list[int]]]:
        """Every internal node (a token prefix) with its sorted child tokens."""
        return [(prefix, sorted(kids)) for prefix, kids in sorted(self.children.items())]

    def label_logprobs(self, node_logprobs: dict[tuple[int, ...], dict[int, float]]) -> dict:
        """log P(label) = the sum of its deciding tokens' log-probabilities on the path."""
        return {
            label: sum(
                node_logprobs[tokens[:d]].get(tokens[d], -math.inf) for d in range(len(tokens))
            )
            for label, tokens in self.labels.items()
        }

    def greedy(self, node_logprobs: dict[tuple[int, ...], dict[int, float]]) -> str:
        """The label a greedy decode constrained to the labels names: the most probable
        child at each node (the lower token id on a tie), until a label is named."""
        node: tuple[int, ...] = ()
        while node not in self._named:
            logprobs = node_logprobs[node]
            node += (min(self.children[node], key=lambda t: (-logprobs.get(t, -math.inf), t)),)
        return self._named[node]


def reasoning_prefix(completion: str) -> str:
    """What the model wrote before its answer, closed for the constrained answer."""
    cut = completion.find("</think>")
    if cut < 0:
        cut = completion.find("<answer>")
    return (completion if cut < 0 else completion[:cut]).rstrip() + "\n"


def label_trie(labels: Sequence[str], encode: Callable[[str], list[int]]) -> LabelTrie:
    """The trie of labels as the model writes them after the answer's opening (``C12]``)."""
    return LabelTrie({label: encode(f"{label}]") for label in labels})


def probe_params(allowed: Sequence[Sequence[int]]) -> list:
    """vLLM sampling parameters of one-token probes, one per request: the log-probability of
    exactly that request's allowed next tokens."""
    from vllm import SamplingParams

    return [
        SamplingParams(temperature=0.0, max_tokens=1, logprob_token_ids=list(a)) for a in allowed
    ]


def probe_logprobs(output) -> dict[int, float]:
    """A probe's {token: log-probability}, from its vLLM completion output."""
    return {tok: lp.logprob for tok, lp in (output.logprobs[0] if output.logprobs else {}).items()}


def trie_logprobs(
    prefixes: Sequence[list[int]], tries: Sequence[LabelTrie], next_logprobs: NextLogprobs
) -> list[dict[tuple[int, ...], dict[int, float]]]:
    """For each prefix and its labels' trie, every trie node's children's log-probabilities
    after prefix + node: one one-token request per node, made in one call."""
    prompts, allowed, keys = [], [], []
    for k, trie in enumerate(tries):
        for node, kids in trie.nodes():
            prompts.append(list(prefixes[k]) + list(node))
            allowed.append(kids)
            keys.append((k, node))
    out: list[dict[tuple[int, ...], dict[int, float]]] = [{} for _ in tries]
    for (k, node), logprobs in zip(keys, next_logprobs(prompts, allowed), strict=True):
        out[k][node] = logprobs
    return out


def answer_prefix(completion: str) -> str:
    """The completion's reasoning, then the opening of the answer up to the label."""
    return reasoning_prefix(completion) + ANSWER_OPEN


def label_log_share(scores: dict[str, float], label: str) -> float:
    """log P(label) among the labels (a log-softmax of their log-probabilities): the mass
    the model puts on writing something else after the answer's opening is left out.
    -inf for a label that is not a candidate or that the model cannot write."""
    finite = [v for v in scores.values() if v > -math.inf]
    if label not in scores or scores[label] == -math.inf:
        return -math.inf
    top = max(finite)
    return scores[label] - top - math.log(sum(math.exp(v - top) for v in finite))
