"""How much a GRPO run could learn: the groups whose completions earned different rewards.

GRPO's advantage is a completion's reward minus its group's mean, so a group whose
completions all earn the same contributes no gradient, and a run where no group ever
differed in accuracy cannot have changed which candidate the model names, however many
steps it took. Three results runs learned exactly that by hand (bench/RESULTS.md, "GRPO
with the target likelihood"); this counts it during training, per reward function, and
keeps the count in the run directory so a resumed run reports the whole run, each step
once.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

FILE = "reward_spread.jsonl"
# trl scales advantages by 1 / (group std + 1e-4): a group whose rewards differ by less
# than that gets advantages of about 0, however it is normalised.
SPREAD = 1e-4


def group_spread(rewards: Sequence[float | None], group: int) -> list[bool]:
    """For each run of ``group`` consecutive completions (trl's sampler keeps a prompt's
    completions together), whether their rewards differ by more than ``SPREAD``. A
    reward of None (trl: not this function's task) or NaN counts as no reward."""
    if group < 1 or len(rewards) % group:
        raise ValueError(f"{len(rewards)} rewards are not groups of {group}")
    out = []
    for start in range(0, len(rewards), group):
        values = [r for r in rewards[start : start + group] if r is not None and r == r]
        out.append(len(values) > 1 and max(values) - min(values) > SPREAD)
    return out


class SpreadLog:
    """Wraps reward functions so that every batch they score appends, per function, which
    groups had a spread to ``run_dir/reward_spread.jsonl``, with the trainer's step
    (``step()``, read at scoring time) and a token of this process (not its pid: a
    container restarts its processes with the same pids)."""

    def __init__(self, run_dir: Path, group: int, step: Callable[[], int] = lambda: 0):
        self.path = Path(run_dir) / FILE
        self.group = group
        self.step = step
        self.process = uuid.uuid4().hex
        # A line a killed process left half written must not swallow this one's first.
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")

    def wrap(self, func: Callable) -> Callable:
        name = getattr(func, "__name__", type(func).__name__)

        def counted(*args: Any, **kwargs: Any) -> list:
            rewards = func(*args, **kwargs)
            self.record(name, rewards)
            return rewards

        counted.__name__ = name  # trl names the logged reward columns after it
        return counted

    def record(self, name: str, rewards: Sequence[float | None]) -> None:
        # A diagnostic never stops training: a batch that is not whole groups (a process's
        # slice of a multi-process batch may split one) is counted as such, not judged.
        rewards = list(rewards)
        whole = len(rewards) % self.group == 0
        line = json.dumps(
            {
                "func": name,
                "step": int(self.step()),
                "process": self.process,
                "spread": group_spread(rewards, self.group) if whole else [],
                "ungrouped": 0 if whole else len(rewards),
            }
        )
        with open(self.path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())


def summary(run_dir: Path) -> dict[str, Any] | None:
    """Groups scored and, per reward function, how many had a spread; None before the
    first batch.

    A resumed run trains again the steps after its checkpoint, so a batch an earlier
    process scored at or after the step where a later process scores is dropped: the
    later one replaced it. A line cut off by a crash is skipped (its batch was scored,
    never trained on: trl scores a batch before its step)."""
    path = Path(run_dir) / FILE
    if not path.exists():
        return None
    per: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        kept = per.setdefault(row["func"], [])
        kept[:] = [r for r in kept if r["process"] == row["process"] or r["step"] < row["step"]]
        kept.append(row)
    if not per:
        return None
    groups = {name: sum(len(r["spread"]) for r in rows) for name, rows in per.items()}
    ungrouped = max(sum(r.get("ungrouped", 0) for r in rows) for rows in per.values())
    # A run begun before this count existed, then resumed, has it from the resume on.
    first = min(r["step"] for rows in per.values() for r in rows)
    return {
        "groups": max(groups.values()),
        **({"counted_from_step": first} if first else {}),
        **({"completions_not_in_whole_groups": ungrouped} if ungrouped else {}),
        "groups_with_spread": {
            name: sum(sum(r["spread"]) for r in rows) for name, rows in per.items()
        },
    }


def no_choice_learned(signal: dict[str, Any] | None, accuracy: str = "accuracy_reward") -> str:
    """A warning when no group differed in accuracy, else ''."""
    if not signal or not signal["groups"] or signal["groups_with_spread"].get(accuracy, 1):
        return ""
    return (
        f"GRPO scored {signal['groups']} groups and no group's completions differed in "
        "accuracy: the run cannot have changed which candidate the model names. Sample "
        "wider (--temperature, --num_generations)."
    )
