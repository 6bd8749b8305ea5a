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
