"""The UnlearnCanvas table: per-target results averaged over styles and over objects, as the
benchmark reports them (percent), and a figure a reviewer can read at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

METRICS = ("UA", "IRA", "CRA")

# Published rows on the real UnlearnCanvas (SD 1.5), for the README only: SLUG's (paper Table 2)
# and the mean of the six UA / IRA / CRA numbers of the methods that have moved past it.
PUBLISHED = {"slug": {"style": {"UA": 86.29, "IRA": 84.59, "CRA": 88.43},
                      "object": {"UA": 75.43, "IRA": 77.50, "CRA": 81.18},
                      "time_s": 39, "memory_gb": 3.61, "storage_gb": 0.04},
             "mean_of_six": {"SLUG": 82.2, "SAEmnesia": 94.9, "SalUn": 92.4, "SAeUron": 90.1}}


def _mean(xs) -> float:
    return float(np.mean(xs)) if xs else float("nan")


def _pct(xs) -> float:
    return round(100 * _mean(xs), 2)


def methods(results: list[dict]) -> dict[str, list[dict]]:
    """Per-target results grouped by method (``slug``, ``slug_<selectivity>``), in order."""
    out: dict[str, list[dict]] = {}
    for r in results:
        out.setdefault(r.get("method", "slug"), []).append(r)
    return out


def table(results: list[dict], sizes: dict[str, int] | None = None) -> dict:
    """``results``: one method's per-target metrics (fractions). Returns the averages in percent
    per kind, the ceilings, IRA / CRA on each half of the other concepts (the half a selective
    step's projection saw, and the one it did not), the cost columns and whether the tiny-canvas
    goal holds per target. ``sizes``: concepts per kind, for the chance-aware UA maximum
    (1 - 1/K: a forgotten concept's images are still judged as it by chance)."""
    out: dict = {}
    for kind in ("style", "object"):
        rows = [r for r in results if r["kind"] == kind]
        if not rows:
            continue
        out[kind] = {
            "targets": len(rows),
            **{m: _pct([r[m] for r in rows]) for m in METRICS},
            "UA_before": _pct([r["before"]["UA"] for r in rows]),
            "IRA_ceiling": _pct([r["ceiling"]["IRA"] for r in rows]),
            "CRA_ceiling": _pct([r["ceiling"]["CRA"] for r in rows]),
            **({"UA_chance_max": round(100 * (1 - 1 / sizes[kind]), 2)} if sizes else {}),
            "halves": {h: {**{m: _pct([r["halves"][h][m] for r in rows]) for m in METRICS[1:]},
                           **{f"{m}_ceiling": _pct([r["halves"][h]["ceiling"][m] for r in rows])
                              for m in METRICS[1:]}}
                       for h in ("seen", "unseen") if all(h in r.get("halves", {}) for r in rows)},
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
    if all(k in out for k in ("style", "object")):
        out["mean_of_six"] = round(_mean([out[k][m] for k in ("style", "object")
                                          for m in METRICS]), 2)
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
    return [{"target": f"{r['kind']}: {r['concept']} ({r.get('method', 'slug')})",
             "method": r.get("method", "slug"), "kind": r["kind"],
             "UA": round(r["UA"], 4), "IRA": round(r["IRA"], 4), "CRA": round(r["CRA"], 4),
             "UA_before": round(r["before"]["UA"], 4), "IRA_ceiling": round(r["ceiling"]["IRA"], 4),
             "CRA_ceiling": round(r["ceiling"]["CRA"], 4), "rel_step": round(r["rel_step"], 4),
             "time_s": r["time_s"], "layer": r["layer"]} for r in results]


def plot(by_method: dict[str, list[dict]], tabs: dict[str, dict], path: str | Path) -> None:
    """One row per kind (styles, objects), one column per metric (UA, IRA, CRA): per target, a
    bar per method side by side, the unedited generator's value as a black tick; the methods'
    averages in each panel's title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path

    names = list(by_method)
    kinds = [k for k in ("style", "object") if any(r["kind"] == k for r in by_method[names[0]])]
    fig, axes = plt.subplots(len(kinds), 3, figsize=(15, 3.8 * len(kinds)), squeeze=False)
    colours = ["#7f8c8d", "#2874a6", "#c0392b", "#239b56"]
    width = 0.8 / len(names)
    for row, kind in zip(axes, kinds):
        for ax, m in zip(row, METRICS):
            base = [r for r in by_method[names[0]] if r["kind"] == kind]
            x = np.arange(len(base))
            for j, name in enumerate(names):
                rows = {r["concept"]: r for r in by_method[name] if r["kind"] == kind}
                vals = [100 * rows[r["concept"]][m] for r in base]
                ax.bar(x + (j - (len(names) - 1) / 2) * width, vals, width,
                       color=colours[j % len(colours)], label=name)
            ref = [100 * (r["before"]["UA"] if m == "UA" else r["ceiling"][m]) for r in base]
            ax.scatter(x, ref, marker="_", s=300, color="black", zorder=3,
                       label="unedited generator")
            if m == "UA":
                ax.axhline(80, color="black", lw=0.8, ls=":")
            ax.set_xticks(x, [r["concept"].replace("_", " ") for r in base], rotation=40,
                          ha="right", fontsize=8)
            ax.set_ylim(0, 105)
            means = " / ".join(f"{tabs[n][kind][m]:.1f}" for n in names)
            ref_mean = tabs[names[0]][kind]["UA_before" if m == "UA" else f"{m}_ceiling"]
            ax.set_title(f"{kind}s: {m}, means {means} (unedited {ref_mean:.1f})", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=len(labels),
               fontsize=9, frameon=False)
    fig.suptitle("UnlearnCanvas (tiny world), evaluation seeds: each method per target",
                 fontsize=11, y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.91))
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
