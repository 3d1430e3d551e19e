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


def plot_pareto(rows: list[dict], alignment_key: str, path: str | Path, naive: str | None = None,
                chosen: str | None = None) -> None:
    """Importance vs alignment per tower (log-log), the Pareto front highlighted and labelled."""
    plt = _plt()
    towers = sorted({r["tower"] for r in rows})
    fig, axes = plt.subplots(1, len(towers), figsize=(6.2 * len(towers), 4.6), squeeze=False)
    for ax, tw in zip(axes[0], towers):
        sub = [r for r in rows if r["tower"] == tw]
        x = [max(abs(r[alignment_key]), 1e-6) for r in sub]
        y = [max(r["importance"], 1e-9) for r in sub]
        front = [r.get("on_front", False) for r in sub]
        ax.scatter([a for a, f in zip(x, front) if not f], [b for b, f in zip(y, front) if not f],
                   marker="x", color="#333", label="layer")
        ax.scatter([a for a, f in zip(x, front) if f], [b for b, f in zip(y, front) if f],
                   s=60, color="#d62728", label="Pareto front", zorder=3)
        for r, a, b, f in zip(sub, x, y, front):
            short = r["name"].replace("transformer.resblocks.", "b").replace("visual.", "v.")
            if f or r["name"] in (naive, chosen):
                tag = " (naive)" if r["name"] == naive else ""
                tag += " (chosen)" if r["name"] == chosen else ""
                ax.annotate(short.removesuffix(".weight") + tag, (a, b), fontsize=7,
                            xytext=(4, 3), textcoords="offset points")
        ax.set(xscale="log", yscale="log", title=f"{tw} tower",
               xlabel=f"gradient alignment ({'|cos|' if alignment_key == 'abs_alignment' else 'cos'})",
               ylabel="importance ||g_f|| / ||theta||")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_search(rows: list[dict], path: str | Path, target: float, chosen: str | None) -> None:
    """Forget and retain scores against the relative step, one line per layer."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    layers = sorted({r["layer"] for r in rows})
    colours = plt.cm.tab20(range(len(layers))) if len(layers) > 10 else None
    for n, layer in enumerate(layers):
        pts = sorted((r["rel_step"], r["forget"], r["retain"]) for r in rows if r["layer"] == layer)
        lw = 2.6 if layer == chosen else 1.2
        label = layer.replace("transformer.resblocks.", "b").removesuffix(".weight")
        kw = dict(marker="o", lw=lw, label=label)
        if colours is not None:
            kw["color"] = colours[n]
        ax1.plot([p[0] for p in pts], [p[1] for p in pts], **kw)
        ax2.plot([p[0] for p in pts], [p[2] for p in pts], **kw)
    for r in rows:
        if r.get("chosen"):
            for ax, key in ((ax1, "forget"), (ax2, "retain")):
                ax.scatter([r["rel_step"]], [r[key]], marker="*", s=320, color="gold",
                           edgecolor="black", zorder=5, label="chosen" if ax is ax2 else None)
                ax.annotate("chosen", (r["rel_step"], r[key]), xytext=(8, 8),
                            textcoords="offset points", fontsize=8, fontweight="bold")
    ax1.axhline(target, color="red", ls="--", lw=1)
    ax1.set(xscale="log", xlabel="step / ||theta|| (relative update)", ylabel="forget (search split)",
            title="forget score")
    ax2.set(xscale="log", xlabel="step / ||theta|| (relative update)", ylabel="retain (validation)",
            title="retain score")
    ax2.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_cosine(before, after, row_labels: list[str], col_labels: list[str], concept: str,
                path: str | Path) -> None:
    """Images x class names cosine similarity, before and after, side by side."""
    plt = _plt()
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(2 + 0.42 * len(col_labels) * 2, 1.5 + 0.11 * len(row_labels)))
    vmin = float(min(before.min(), after.min()))
    vmax = float(max(before.max(), after.max()))
    ticks = [i for i in range(len(row_labels)) if i == 0 or row_labels[i] != row_labels[i - 1]]
    for ax, m, title in ((axes[0], before, "before"), (axes[1], after, f"after unlearning {concept}")):
        sns.heatmap(m.numpy(), ax=ax, vmin=vmin, vmax=vmax, cmap="viridis", cbar=ax is axes[1],
                    xticklabels=col_labels, yticklabels=False,
                    cbar_kws={"label": "cosine similarity (image, class prompt)"})
        ax.set_xlabel("class name (text prompt)")
        ax.set_ylabel("images, grouped by their true class")
        ax.set_yticks([t + 0.5 for t in ticks], [row_labels[t] for t in ticks], fontsize=7)
        ax.set_xticklabels(col_labels, rotation=90, fontsize=7)
        ax.set_title(title)
        for lbl in ax.get_xticklabels() + ax.get_yticklabels():
            if lbl.get_text().lower() == concept.lower():
                lbl.set_color("red")
                lbl.set_fontweight("bold")
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
