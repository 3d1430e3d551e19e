"""Stage rank: the Pareto front per tower, the layers table with flags, the candidates to search."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from pipeline.errors import DataError
from pipeline.io import write_json, write_text
from pipeline.params import Params
from pipeline.report.figures import plot_pareto
from pipeline.unlearn import layers as L

from ._common import run

TABLE = Path("plots/rank/layers.csv")
FIGURE = Path("plots/rank/pareto.png")
METRICS = Path("metrics/rank.json")
FIELDS = ["name", "tower", "depth", "numel", "norm_theta", "norm_grad_forget", "norm_grad_retain",
          "dot", "importance", "alignment", "abs_alignment", "ratio", "front_level", "on_front", "selected",
          "naive"]


def main(p: Params) -> None:
    src = Path(p.gradients.out) / "layers.json"
    if not src.exists():
        raise DataError(f"{src} is missing; run the gradients stage first")
    rows = [r for r in json.loads(src.read_text()) if r["candidate"]]
    signed = p.rank.alignment == "signed"
    L.annotate(rows, signed=signed, fronts=p.rank.fronts)
    selected = L.select(rows, p.rank.rule)
    naive = L.naive_choice(rows)
    for r in rows:
        r["selected"], r["naive"] = r["name"] in selected, r["name"] == naive
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(sorted(rows, key=lambda r: (r["tower"], r["depth"], r["name"])))
    write_text(TABLE, buf.getvalue())
    plot_pareto(rows, "alignment" if signed else "abs_alignment", FIGURE, naive=naive)
    write_json(METRICS, {"rule": p.rank.rule, "alignment": p.rank.alignment, "fronts": p.rank.fronts,
                         "candidates": len(rows), "front": sum(r["on_front"] for r in rows),
                         "selected": selected, "naive_max_importance": naive})
    print(f"rank: {len(selected)} layer(s) to search ({p.rank.rule}); naive choice {naive}")


if __name__ == "__main__":
    run(main)
