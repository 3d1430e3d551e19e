"""Figures for people reading the repository (PNG, seaborn); DVC plots read the CSV tables."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..io import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt


def plot_history(history: list[dict], metric_keys: Sequence[str], path: str | Path) -> None:
    """Training loss and zero-shot accuracy per kind against the step."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = [r["step"] for r in history]
    ax1.plot(steps, [r["loss"] for r in history], color="#444")
    ax1.set(xlabel="step", ylabel="CLIP loss", title="training loss")
    for k in metric_keys:
        pts = [(r["step"], r[k]) for r in history if k in r]
        if pts:
            ax2.plot(*zip(*pts), marker="o", label=k)
    ax2.set(xlabel="step", ylabel="zero-shot top-1", ylim=(0, 1.02), title="held-out accuracy")
    ax2.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
