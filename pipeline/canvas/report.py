"""The UnlearnCanvas table: per-target results averaged over styles and over objects, as the
benchmark reports them (percent), and a figure a reviewer can read at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

METRICS = ("UA", "IRA", "CRA")

# SLUG's published row (paper Table 2; SD 1.5 on the real UnlearnCanvas), for the README only.
PUBLISHED_SLUG = {"style": {"UA": 86.29, "IRA": 84.59, "CRA": 88.43},
                  "object": {"UA": 75.43, "IRA": 77.50, "CRA": 81.18},
                  "time_s": 39, "memory_gb": 3.61, "storage_gb": 0.04}


def _mean(xs) -> float:
    return float(np.mean(xs)) if xs else float("nan")


def table(results: list[dict]) -> dict:
    """``results``: per-target metrics (fractions). Returns the averages in percent per kind, the
    ceilings, the cost columns and whether the tiny-canvas goal holds per target."""
    out: dict = {}
    for kind in ("style", "object"):
        rows = [r for r in results if r["kind"] == kind]
        if not rows:
            continue
        out[kind] = {
            "targets": len(rows),
            **{m: round(100 * _mean([r[m] for r in rows]), 2) for m in METRICS},
            "UA_before": round(100 * _mean([r["before"]["UA"] for r in rows]), 2),
            "IRA_ceiling": round(100 * _mean([r["ceiling"]["IRA"] for r in rows]), 2),
            "CRA_ceiling": round(100 * _mean([r["ceiling"]["CRA"] for r in rows]), 2),
        }
    out["time_s"] = round(_mean([r["time_s"] for r in results]), 2)
    out["time_s_max"] = round(max(r["time_s"] for r in results), 2)
    out["peak_memory_mb"] = round(_mean([r["peak_memory_mb"] for r in results]), 1)
    out["peak_memory_mb_max"] = round(max(r["peak_memory_mb"] for r in results), 1)
    out["storage_mb"] = round(_mean([r["storage_mb"] for r in results]), 4)
    out["search_reached"] = {"targets": sum(r["search"]["reached"] for r in results),
                             "of": len(results),
                             "not_reached": [r["concept"] for r in results
                                             if not r["search"]["reached"]]}
    out["goal"] = goal(results)
    return out


def goal(results: list[dict], ua: float = 0.8, within: float = 0.10) -> dict:
    """The tiny-canvas goal per target: UA >= 0.8, IRA and CRA within 10 points of the ceiling."""
    per = {r["concept"]: {"UA": r["UA"] >= ua,
                          "IRA": r["IRA"] >= r["ceiling"]["IRA"] - within,
                          "CRA": r["CRA"] >= r["ceiling"]["CRA"] - within} for r in results}
    return {"rule": f"UA >= {ua}, IRA and CRA >= ceiling - {within}",
            "met": sum(all(v.values()) for v in per.values()), "of": len(per),
            "missed": {k: [m for m, ok in v.items() if not ok] for k, v in per.items()
                       if not all(v.values())}}


def rows_csv(results: list[dict]) -> list[dict]:
    return [{"target": f"{r['kind']}: {r['concept']}", "kind": r["kind"],
             "UA": round(r["UA"], 4), "IRA": round(r["IRA"], 4), "CRA": round(r["CRA"], 4),
             "UA_before": round(r["before"]["UA"], 4), "IRA_ceiling": round(r["ceiling"]["IRA"], 4),
             "CRA_ceiling": round(r["ceiling"]["CRA"], 4), "rel_step": round(r["rel_step"], 4),
             "time_s": r["time_s"], "layer": r["layer"]} for r in results]


def plot(results: list[dict], tab: dict, path: str | Path) -> None:
    """Two panels (styles, objects): UA, IRA and CRA per target as bars, the unedited generator's
    values as outlined markers, and the averages in the titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path

    kinds = [k for k in ("style", "object") if any(r["kind"] == k for r in results)]
    fig, axes = plt.subplots(len(kinds), 1, figsize=(11, 3.6 * len(kinds)), squeeze=False)
    colours = {"UA": "#c0392b", "IRA": "#2874a6", "CRA": "#239b56"}
    for ax, kind in zip(axes[:, 0], kinds):
        rows = [r for r in results if r["kind"] == kind]
        x = np.arange(len(rows))
        for k, m in enumerate(METRICS):
            vals = [100 * r[m] for r in rows]
            ax.bar(x + (k - 1) * 0.27, vals, 0.27, color=colours[m], label=f"{m} after SLUG")
            ref = [100 * (r["before"]["UA"] if m == "UA" else r["ceiling"][m]) for r in rows]
            ax.scatter(x + (k - 1) * 0.27, ref, marker="_", s=160, color="black", zorder=3,
                       label="unedited generator" if k == 0 else None)
        ax.axhline(80, color=colours["UA"], lw=0.8, ls=":")
        ax.set_xticks(x, [r["concept"].replace("_", " ") for r in rows], rotation=30, ha="right")
        ax.set_ylim(0, 105)
        ax.set_ylabel("%")
        t = tab[kind]
        ax.set_title(f"{kind.capitalize()} unlearning - mean UA {t['UA']:.1f}, IRA {t['IRA']:.1f} "
                     f"(ceiling {t['IRA_ceiling']:.1f}), CRA {t['CRA']:.1f} (ceiling "
                     f"{t['CRA_ceiling']:.1f})", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=4, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
