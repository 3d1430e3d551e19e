"""The several-concepts benchmark's table and figure: per strategy and run, how many concepts
were forgotten, the worst forgotten concept's held-out forget, what the retained identities,
ImageNet and the other kinds kept, and the time."""

from __future__ import annotations

from pathlib import Path

from ..io import atomic_path

FIELDS = ["strategy", "run", "concepts", "reached", "forget_top1_max", "forget_top5_max",
          "celeba_before", "celeba_after", "imagenet_before", "imagenet_after",
          "characters_after", "unlearn_s", "evaluate_s"]


def row(strategy: str, run: str, m: dict) -> dict:
    """One run's row (``multi.record``'s metrics). The forget columns are the worst concept's,
    over both held-out sets (its evaluation images and its forget test split)."""
    after = [v["after"][s] for v in m["concepts"].values() for s in ("forget", "forget_split")]
    r = m["retained"]

    def pct(x):
        return None if x is None else round(100 * x, 1)

    return {"strategy": strategy, "run": run, "concepts": len(m["concepts"]),
            "reached": m["reached"],
            "forget_top1_max": pct(max(a["top1"] for a in after)),
            "forget_top5_max": pct(max(a["top5"] for a in after)),
            "celeba_before": pct(r["celeba"]["before"]["top1"]),
            "celeba_after": pct(r["celeba"]["after"]["top1"]),
            "imagenet_before": pct(r["imagenet"]["before"]["top1"]),
            "imagenet_after": pct(r["imagenet"]["after"]["top1"]),
            "characters_after": pct(r.get("characters", {}).get("after", {}).get("top1")),
            "unlearn_s": m["time_s"]["total"], "evaluate_s": m["time_s"]["evaluate_after"]}


def sd_row(strategy: str, m: dict) -> dict:
    """One diffusion-path run (``stages.multi_sd``'s metrics): each forgotten concept's share of
    generations judged as it, before and after; the retained concepts' share and drop, in %."""
    g = m["generations"]
    return {"strategy": strategy, "reached": m["reached"], "judge": m["judge"],
            "images_per_prompt": m["images_per_prompt"],
            "forgotten": {c: {k: round(100 * v[k], 1) for k in ("before", "after")}
                          for c, v in g["forgotten"].items()},
            "retained_before": round(100 * g["before"]["retained"], 1),
            "retained_after": round(100 * g["after"]["retained"], 1),
            "retained_drop": round(100 * g["retained_drop"], 1),
            "unlearn_s": m["time_s"]["total"]}


def plot_curve(rows: list[dict], path: str | Path) -> None:
    """CelebA retain and ImageNet top-1 against the number of identities forgotten, a line per
    strategy; dashed, the unedited model on the same identities and images."""
    from .figures import _plt

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    curve = [r for r in rows if r["run"].startswith("n")]
    for ax, key, title in ((axes[0], "celeba", "CelebA retain (remaining identities)"),
                           (axes[1], "imagenet", "ImageNet")):
        for strategy in sorted({r["strategy"] for r in curve}):
            pts = sorted((r["concepts"], r[f"{key}_after"]) for r in curve
                         if r["strategy"] == strategy)
            ax.plot(*zip(*pts), marker="o", label=strategy)
        before = sorted({(r["concepts"], r[f"{key}_before"]) for r in curve})
        if before:  # the same identities left out, unedited
            ax.plot(*zip(*before), ls="--", color="#888", label="unedited")
        ax.set(xscale="log", xlabel="identities forgotten at once", ylabel="top-1 (%)",
               title=title, ylim=(0, 100))
        ax.set_xticks(sorted({r["concepts"] for r in curve}))
        ax.set_xticklabels(sorted({r["concepts"] for r in curve}))
    axes[0].legend(loc="lower left")
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
