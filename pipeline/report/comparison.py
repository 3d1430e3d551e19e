"""The comparison figure: SLUG and the baselines on one page."""

from __future__ import annotations

from pathlib import Path

from ..io import atomic_path
from .figures import _plt

MARKERS = {"slug": "*", "oracle": "D"}


def plot_compare(rows: list[dict], curves: list[dict], path: str | Path, target: float, topk: int,
                 concept: str) -> None:
    """Three panels: held-out forget top-1 against identity retain and against object utility
    (one point per method; up and to the left is better; the retrain oracle, when there is one,
    is the diamond to aim at), and the search criterion (forget top-``topk`` on the search split)
    against wall time (each method's path to the target; SLUG's result time marked)."""
    plt = _plt()
    import seaborn as sns

    methods = [r["method"] for r in rows]
    colours = dict(zip(methods, sns.color_palette("tab10", len(methods))))
    label = {r["method"]: r["label"] for r in rows}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for ax, key, title in ((axes[0], "celeba_top1", "identity retain (CelebA top-1)"),
                           (axes[1], "imagenet_top1", "object utility (ImageNet top-1)")):
        for r in rows:
            if r.get(key) is None:
                continue
            slug = r["method"] == "slug"
            ax.scatter(r["forget_top1"], r[key], s=220 if slug else 70, color=colours[r["method"]],
                       marker=MARKERS.get(r["method"], "o"), edgecolor="black", linewidth=0.6,
                       zorder=4 if slug else 3, alpha=0.9)
        ax.axvline(0.05, color="grey", ls=":", lw=1)
        ax.set(xlabel="forget top-1 (held-out; lower is better)", ylabel=title, xlim=(-0.05, 1.05))
    axes[0].set_title(f"forgetting {concept}: identities kept")
    axes[1].set_title("objects kept")
    ax = axes[2]
    for m in methods:
        pts = sorted((c["elapsed_s"], c["forget"]) for c in curves if c["method"] == m)
        if pts:
            ax.plot(*zip(*pts), marker=".", color=colours[m])
    slug = next((r for r in rows if r["method"] == "slug"), None)
    if slug and slug.get("time_to_forget_s"):
        ax.axvline(slug["time_to_forget_s"], color=colours["slug"], ls="--", lw=1.5)
        ax.annotate("SLUG result ready", (slug["time_to_forget_s"], 0.5), rotation=90,
                    textcoords="offset points", xytext=(-12, 0), fontsize=9, va="center")
    ax.axhline(target, color="grey", ls=":", lw=1)
    ax.set(xscale="log", xlabel="wall time since the method started (s)",
           ylabel=f"forget top-{topk} (search split)", ylim=(-0.04, 1.04), title="time to forget")
    handles = [plt.Line2D([], [], marker=MARKERS.get(m, "o"), ls="", color=colours[m],
                          markeredgecolor="black", markersize=13 if m == "slug" else 8,
                          label=label[m]) for m in methods]
    fig.legend(handles=handles, loc="lower center", ncol=len(methods), frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
