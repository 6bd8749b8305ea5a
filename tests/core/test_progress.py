"""Progress lines for logs: rate and ETA, at most one per interval, and a final line."""

from __future__ import annotations

import io
import re

from r2rec.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_carry_done_rate_and_eta_at_most_once_per_interval():
    out, clock = io.StringIO(), Clock()
    p = Progress("score serve ds=2026-11-25", 100, "users", stream=out, interval_s=10,
                 interactive=False, clock=clock)  # fmt: skip
    clock.now += 4
    p.advance(8)  # 4 s in: under the interval, no line
    assert out.getvalue() == ""
    clock.now += 6
    p.advance(12)  # 10 s in, 20 done: 2 users/s, 80 left -> 40 s
    clock.now += 2
    p.advance(4)  # 2 s after the last line: none
    lines = out.getvalue().splitlines()
    assert lines == [
        "score serve ds=2026-11-25: 20/100 users (20.0%), 2.00 users/s, elapsed 10.0 s, ETA 40.0 s"
    ]
    clock.now += 28
    p.advance(76)
    p.close()
    p.close()  # idempotent: one final line
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert (
        lines[1]
        == "score serve ds=2026-11-25: 100/100 users (100.0%), 2.50 users/s, elapsed 40.0 s, done"
    )


def test_a_stopped_run_says_so_and_long_durations_read_as_minutes():
    out, clock = io.StringIO(), Clock()
    with Progress("evaluate llm:x", 943, "rankings", stream=out, interval_s=0,
                  interactive=False, clock=clock) as p:  # fmt: skip
        clock.now += 125
        p.advance(100)
    first, last = out.getvalue().splitlines()
    assert re.search(
        r"100/943 rankings \(10\.6%\), 0\.80 rankings/s, elapsed 2m05s, ETA 17m34s$", first
    )
    assert last.endswith("elapsed 2m05s, stopped")


def test_resumed_training_counts_only_the_remaining_steps_in_its_rate():
    out, clock = io.StringIO(), Clock()
    p = Progress("sft run-1", 1000, "steps", stream=out, interval_s=0, interactive=False,
                 clock=clock)  # fmt: skip
    p.start_at(400)
    p.note = "loss 0.0475"
    clock.now += 60
    p.advance(10)
    assert out.getvalue().splitlines() == [
        "sft run-1 (from 400): 10/600 steps (1.7%), 0.17 steps/s, elapsed 1m00s, loss 0.0475, "
        "ETA 59m00s"
    ]


def test_on_a_terminal_a_bar_replaces_the_lines():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    with Progress("score", 10, "users", stream=out, interval_s=0) as p:
        assert p._bar is not None
        p.advance(10)
    # Per-advance log lines are not written on a terminal; the closing line is.
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    lines = [ln for ln in text.splitlines() if ln.startswith("score: ")]
    assert len(lines) == 1
    assert lines[0].startswith("score: 10/10 users (100.0%)") and lines[0].endswith("done")
