"""Stage table of the UnlearnCanvas sweep: every target's metrics averaged over styles and over
objects (metrics/unlearncanvas.json, in percent as the benchmark reports) and the figure."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from pipeline.canvas import report
from pipeline.errors import DataError
from pipeline.io import write_json, write_text
from pipeline.params import Params

from ._common import run

METRICS = Path("metrics/unlearncanvas.json")
PLOTS = Path("plots/unlearncanvas")


def main(p: Params) -> None:
    c = p.canvas
    results, missing = [], []
    for kind, names in (("style", c.styles), ("object", c.objects)):
        for name in names:
            path = Path(c.out) / kind / name / "metrics.json"
            if not path.exists():
                missing.append(f"{kind}@{name}")
                continue
            results.append(json.loads(path.read_text()))
    if missing:
        raise DataError(f"no result for {', '.join(missing)}; run dvc repro "
                        f"benchmarks/unlearncanvas/dvc.yaml")
    tab = report.table(results)
    classifiers = json.loads(Path("metrics/canvas_classifiers.json").read_text()) \
        if Path("metrics/canvas_classifiers.json").exists() else None
    base = json.loads(Path("metrics/canvas_base.json").read_text())
    write_json(METRICS, {**tab, "ceiling_whole_grid": base["ceiling"],
                         "classifiers_on_real_canvas": None if classifiers is None else
                         {k: classifiers[k]["val_accuracy"] for k in ("style", "object")},
                         "published_slug_sd15": report.PUBLISHED_SLUG,
                         "note": "tiny world: a 7 M-parameter CLIP text tower in a 32 px generator; "
                                 "not comparable with the published SD 1.5 numbers"})
    rows = report.rows_csv(results)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    write_text(PLOTS / "targets.csv", buf.getvalue())
    report.plot(results, tab, PLOTS / "table.png")
    for kind in ("style", "object"):
        if kind in tab:
            t = tab[kind]
            print(f"unlearncanvas: {kind}: UA {t['UA']:.1f}, IRA {t['IRA']:.1f} (ceiling "
                  f"{t['IRA_ceiling']:.1f}), CRA {t['CRA']:.1f} (ceiling {t['CRA_ceiling']:.1f})")
    print(f"unlearncanvas: goal met on {tab['goal']['met']}/{tab['goal']['of']} targets")


if __name__ == "__main__":
    run(main)
