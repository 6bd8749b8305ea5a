"""Training curves from a trainer's log history, as one PNG in the run directory."""

from __future__ import annotations

from pathlib import Path

# Panels in order; a key absent from the log is skipped (SFT has no rewards).
PANELS = (
    ("loss", ("loss",)),
    (
        "reward",
        (
            "reward",
            "rewards/accuracy_reward/mean",
            "rewards/format_reward/mean",
            "rewards/grounding_reward/mean",
        ),
    ),
    ("completion length", ("completions/mean_length",)),
    ("token accuracy", ("mean_token_accuracy",)),
)


def series(log_history: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(e["step"], e[key]) for e in log_history if key in e and "step" in e]
    return [s for s, _ in points], [float(v) for _, v in points]


def plot_curves(log_history: list[dict], path: Path, title: str = "") -> Path | None:
    """Write the curves that the log holds; ``None`` when it holds none."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [(name, [k for k in keys if series(log_history, k)[0]]) for name, keys in PANELS]
    panels = [(name, keys) for name, keys in panels if keys]
    if not panels:
        return None
    fig = Figure(figsize=(4.2 * len(panels), 3.4), dpi=100)
    FigureCanvasAgg(fig)
    for i, (name, keys) in enumerate(panels, 1):
        ax = fig.add_subplot(1, len(panels), i)
        for key in keys:
            xs, ys = series(log_history, key)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=key)
        ax.set_xlabel("step")
        ax.set_title(name, fontsize=10)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
