"""The GRPO signal benchmark's summary: only groups with unequal rewards count as signal."""

from bench.grpo_signal import group_stats


def test_a_group_counts_as_signal_only_when_its_rewards_differ():
    rewards = [[1.1, 1.1, 1.1], [1.1, 0.1, 0.1], [-1.0, -1.0, -1.0], [0.1, 0.2, 0.1]]
    accuracy = [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    got = group_stats(rewards, accuracy)
    assert got["groups"] == 4
    assert got["share_reward_spread"] == 0.5  # groups 2 and 4
    assert got["share_accuracy_spread"] == 0.25  # group 2 only: 4's spread is grounding
    assert abs(got["mean_reward"] - sum(map(sum, rewards)) / 12) < 1e-12
    assert got["mean_accuracy"] == 4 / 12


def test_where_evidence_decides_counts_the_target_at_first_and_second_place_by_closeness():
    from bench.grpo_signal import where_evidence_decides
    from r2rec.prompt import Evidence, RecPrompt

    def row(target, *scores):
        labels = tuple((f"C{k + 1}", f"i{k}") for k in range(3))
        ev = {f"C{k + 1}": Evidence(1, 0.1, ("h",), s) for k, s in enumerate(scores)}
        return {"target_label": target, "prompt_facts": RecPrompt(("h",), labels, ev).to_json()}

    rows = [
        row("C2", 0.1, 1.0),  # runner-up at 0.1: the strongest (C2) is the target
        row("C1", 0.1, 1.0),  # same bin: the runner-up is
        row("C3", 0.95, 1.0, 0.2),  # 0.95: neither
        row("C1", 0.95, 1.0),  # 0.95: the runner-up
        row("C1", 1.0),  # one candidate with evidence
    ]
    got = {d["runner_up_from"]: d for d in where_evidence_decides(rows)}
    assert set(got) == {-1.0, 0.1, 0.9}
    assert (got[0.1]["prompts"], got[0.1]["strongest_is_target"]) == (2, 0.5)
    assert got[0.1]["runner_up_is_target"] == 0.5
    assert (got[0.9]["prompts"], got[0.9]["strongest_is_target"]) == (2, 0.0)
    assert got[0.9]["runner_up_is_target"] == 0.5
    assert (got[-1.0]["prompts"], got[-1.0]["strongest_is_target"]) == (1, 1.0)
