"""GRPO's learning signal: the groups each reward function told apart, over resumes."""

from __future__ import annotations

import json
import math

import pytest

from trainer.signal import FILE, SpreadLog, group_spread, no_choice_learned, summary


def test_group_spread_judges_each_group_of_consecutive_completions():
    assert group_spread([1.0, 1.0, 0.0, 1.0], 2) == [False, True]
    assert group_spread([0.1, 0.1, 0.1, 0.1 + 5e-5], 4) == [False]  # under trl's 1e-4 guard
    assert group_spread([0.1, 0.1, 0.1, 0.1 + 2e-4], 4) == [True]
    # None (not this function's task) and NaN are no reward, not a difference.
    assert group_spread([None, 1.0, math.nan, 1.0, None, None], 3) == [False, False]
    assert group_spread([None, 0.0, 1.0], 3) == [True]
    with pytest.raises(ValueError, match="5 rewards are not groups of 2"):
        group_spread([0.0] * 5, 2)


def accuracy_reward(completions, target, **_):
    return [1.0 if c == t else 0.0 for c, t in zip(completions, target, strict=True)]


class Likelihood:
    __name__ = "target_likelihood_reward"

    def __call__(self, completions, **_):
        return [0.5] * len(completions)


def test_spread_log_counts_per_function_and_keeps_the_functions_contract(tmp_path):
    log = SpreadLog(tmp_path, group=2)
    funcs = [log.wrap(accuracy_reward), log.wrap(Likelihood())]
    # trl reads the names for its logged columns and passes every column as keywords.
    assert [f.__name__ for f in funcs] == ["accuracy_reward", "target_likelihood_reward"]
    batches = [(["a", "b", "a", "a"], ["a", "a", "a", "a"]), (["b", "b"], ["a", "a"])]
    for step, (completions, target) in enumerate(batches):
        log.step = lambda step=step: step
        got = funcs[0](completions=completions, target=target)
        assert got == accuracy_reward(completions, target)
        assert funcs[1](completions=completions, target=target) == [0.5] * len(completions)
    assert summary(tmp_path) == {
        "groups": 3,
        "groups_with_spread": {"accuracy_reward": 1, "target_likelihood_reward": 0},
    }


def test_a_resumed_run_counts_each_step_once(tmp_path):
    """The first process scored steps 0-5 and died after the checkpoint at step 3; the
    second redid 3-5 and went on to 7. The redone steps count once, the second's."""
    first = SpreadLog(tmp_path, group=2)
    for step in range(6):
        first.step = lambda step=step: step
        first.record("accuracy_reward", [0.0, 1.0])  # spread in every group
    with open(tmp_path / FILE, "a") as f:
        f.write('{"func": "accuracy_reward", "step": 6, "spr')  # cut off by the kill
    second = SpreadLog(tmp_path, group=2)
    for step in range(3, 8):
        second.step = lambda step=step: step
        second.record("accuracy_reward", [1.0, 1.0])  # none
    assert summary(tmp_path) == {"groups": 8, "groups_with_spread": {"accuracy_reward": 3}}


def test_a_count_begun_mid_run_says_from_which_step(tmp_path):
    log = SpreadLog(tmp_path, group=2, step=lambda: 20)
    log.record("accuracy_reward", [0.0, 1.0])
    assert summary(tmp_path) == {
        "groups": 1,
        "counted_from_step": 20,
        "groups_with_spread": {"accuracy_reward": 1},
    }


def test_a_batch_that_is_not_whole_groups_is_counted_not_judged(tmp_path):
    log = SpreadLog(tmp_path, group=4)
    log.record("accuracy_reward", [0.0, 1.0, 0.0])  # must not stop training
    log.record("accuracy_reward", [0.0, 1.0, 0.0, 0.0])
    assert summary(tmp_path) == {
        "groups": 1,
        "completions_not_in_whole_groups": 3,
        "groups_with_spread": {"accuracy_reward": 1},
    }
    rows = [json.loads(x) for x in (tmp_path / FILE).read_text().splitlines()]
    assert [r["ungrouped"] for r in rows] == [3, 0]


def test_no_choice_learned_warns_only_when_no_group_differed_in_accuracy(tmp_path):
    assert summary(tmp_path) is None and no_choice_learned(None) == ""
    flat = {"groups": 30, "groups_with_spread": {"accuracy_reward": 0, "format_reward": 4}}
    warning = no_choice_learned(flat)
    assert "30 groups" in warning and "no group's completions differed in accuracy" in warning
    assert "--temperature" in warning
    one = {"groups": 30, "groups_with_spread": {"accuracy_reward": 1, "format_reward": 4}}
    assert no_choice_learned(one) == ""
    assert no_choice_learned({"groups": 0, "groups_with_spread": {"accuracy_reward": 0}}) == ""
