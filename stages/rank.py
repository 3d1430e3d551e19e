"""Stage rank: the Pareto front per tower, the layers table with flags, the layers to search, and
the split-half reliability of the ranking (``pipeline.unlearn.reliability``)."""

from __future__ import annotations

from pathlib import Path

from pipeline.entry import metrics_path, plots_dir, run
from pipeline.io import write_csv, write_json
from pipeline.params import Params
from pipeline.report.figures import plot_pareto
from pipeline.unlearn import layers as L
from pipeline.unlearn import reliability as R
from pipeline.unlearn import slug
from pipeline.unlearn import workflow as W

FIELDS = ["name", "tower", "depth", "numel", "norm_theta", "norm_grad_forget", "norm_grad_retain",
          "dot", "importance", "alignment", "abs_alignment", "ratio", "front_level", "on_front",
          "selected", "naive", *R.HALF_COLUMNS]


def main(p: Params) -> None:
    r = p.rank
    selected, rows = slug.rank(W.read_layers(p.gradients.out),
                               slug.RankConfig(r.alignment == "signed", r.fronts, r.rule))
    naive = L.naive_choice(rows)
    for row in rows:
        row["selected"], row["naive"] = row["name"] in selected, row["name"] == naive
    plots = plots_dir("rank")
    write_csv(plots / "layers.csv", sorted(rows, key=lambda x: (x["tower"], x["depth"], x["name"])),
              FIELDS)
    plot_pareto(rows, "alignment" if r.alignment == "signed" else "abs_alignment",
                plots / "pareto.png", naive=naive)
    selection = {"rule": r.rule, "alignment": r.alignment, "fronts": r.fronts,
                 "candidates": len(rows), "front": sum(x["on_front"] for x in rows),
                 "selected": selected, "naive_max_importance": naive,
                 "reliability": R.reliability(rows, r.alignment == "signed", r.fronts, selected)}
    write_json(Path(r.out) / W.SELECTION, selection)
    write_json(metrics_path("rank"), selection)
    print(f"rank: {len(selected)} layer(s) to search ({r.rule}); naive choice {naive}")
    print(R.summary_line(selection["reliability"]))


if __name__ == "__main__":
    run(main)
