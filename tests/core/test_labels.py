"""r2rec.labels: the label trie's requests and the target's share among the labels."""

from __future__ import annotations

import math

import pytest

from r2rec.labels import LabelTrie, answer_prefix, label_log_share, label_trie, trie_logprobs


def test_trie_logprobs_asks_each_node_after_its_own_prefix_and_maps_answers_back():
    # C1] = 7 1 9, C2] = 7 2 9: the nodes are () -> {7} and (7,) -> {1, 2}.
    tries = [LabelTrie({"C1": [7, 1, 9], "C2": [7, 2, 9]}), LabelTrie({"C1": [5], "C2": [6]})]
    asked = []

    def next_logprobs(prompts, allowed):
        asked.extend(zip(map(tuple, prompts), map(tuple, allowed), strict=True))
        # a distinct value per (prompt, token), so a mix-up of rows shows
        return [{t: -(len(p) + t / 100) for t in a} for p, a in zip(prompts, allowed, strict=True)]

    out = trie_logprobs([[100, 101], [200]], tries, next_logprobs)
    assert sorted(asked) == sorted([((100, 101), (7,)), ((100, 101, 7), (1, 2)), ((200,), (5, 6))])
    assert out[0] == {(): {7: -2.07}, (7,): {1: -3.01, 2: -3.02}}
    assert out[1] == {(): {5: -1.05, 6: -1.06}}
    assert tries[0].label_logprobs(out[0]) == pytest.approx({"C1": -5.08, "C2": -5.09})


def test_label_log_share_is_a_log_softmax_over_the_labels_only():
    scores = {"C1": math.log(0.3), "C2": math.log(0.1), "C3": -math.inf}
    # 0.4 of the mass is on labels; the rest (other text) is left out
    assert label_log_share(scores, "C1") == pytest.approx(math.log(0.75))
    assert label_log_share(scores, "C2") == pytest.approx(math.log(0.25))
    assert label_log_share(scores, "C3") == -math.inf
    assert label_log_share(scores, "C9") == -math.inf  # not a candidate
    # a miss the model is sure of stays finite and ordered, far below any float's 1e-300
    sure = {"C1": 0.0, "C2": -900.0, "C3": -1000.0}
    assert label_log_share(sure, "C2") == pytest.approx(-900.0)
    assert label_log_share(sure, "C3") < label_log_share(sure, "C2")


def test_label_trie_and_answer_prefix_are_what_scoring_writes():
    trie = label_trie(["C1", "C12"], lambda text: [ord(c) for c in text])
    assert trie.labels == {"C1": tuple(map(ord, "C1]")), "C12": tuple(map(ord, "C12"))}
    assert answer_prefix("<think>\nStep 1: x.\n</think>\n<answer>[C3]</answer>") == (
        "<think>\nStep 1: x.\n</think>\n<answer>["
    )


def test_probes_ask_for_exactly_the_allowed_tokens_and_read_them_back():
    from types import SimpleNamespace

    from r2rec.labels import probe_logprobs, probe_params

    params = probe_params([[7], [1, 2]])
    assert [p.logprob_token_ids for p in params] == [[7], [1, 2]]
    assert all(p.max_tokens == 1 and p.temperature == 0.0 for p in params)
    out = SimpleNamespace(
        logprobs=[{1: SimpleNamespace(logprob=-0.5), 2: SimpleNamespace(logprob=-2.0)}]
    )
    assert probe_logprobs(out) == {1: -0.5, 2: -2.0}
    assert probe_logprobs(SimpleNamespace(logprobs=None)) == {}  # nothing came back
