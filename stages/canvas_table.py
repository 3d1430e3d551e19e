"""Stage table of the UnlearnCanvas sweep: every target's metrics averaged over styles and over
objects (in percent, as the benchmark reports them) and the figure."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.canvas import classifiers as C
from pipeline.canvas import protocol, report
from pipeline.entry import plots_dir, run
from pipeline.errors import DataError
from pipeline.io import write_csv, write_json
from pipeline.params import Params


def main(p: Params) -> None:
    c = p.canvas
    paths = {f"{kind}@{name}-{mode}": Path(c.out) / mode / kind / name / "metrics.json"
             for mode in c.methods
             for kind, names in (("style", c.styles), ("object", c.objects)) for name in names}
    if missing := [k for k, path in paths.items() if not path.exists()]:
        raise DataError(f"no result for {', '.join(missing)}; run dvc repro "
                        f"benchmarks/unlearncanvas/dvc.yaml")
    results = [json.loads(path.read_text()) for path in paths.values()]
    by = report.methods(results)
    sizes = {"style": len(c.styles), "object": len(c.objects)}
    tabs = {name: report.table(rows, sizes) for name, rows in by.items()}
    accuracy = {k: C.val_accuracy(getattr(c.classifiers, k)) for k in ("style", "object")}
    write_json(c.table, {
        "methods": tabs, "ceiling_whole_grid": protocol.read_ceiling(c.base),
        "classifiers_on_real_canvas": accuracy if None not in accuracy.values() else None,
        "published": report.PUBLISHED,
        "note": "tiny world: a 7 M-parameter CLIP text tower in a 32 px generator; not "
                "comparable with the published SD 1.5 numbers"})
    plots = plots_dir("unlearncanvas")
    write_csv(plots / "targets.csv", report.rows_csv(results))
    report.plot(by, tabs, plots / "table.png")
    for name, tab in tabs.items():
        for kind in ("style", "object"):
            if kind in tab:
                t = tab[kind]
                print(f"unlearncanvas: {name}: {kind}: UA {t['UA']:.1f}, IRA {t['IRA']:.1f} "
                      f"(ceiling {t['IRA_ceiling']:.1f}), CRA {t['CRA']:.1f} (ceiling "
                      f"{t['CRA_ceiling']:.1f})")
        print(f"unlearncanvas: {name}: goal met on {tab['goal']['met']}/{tab['goal']['of']} "
              f"targets")

if __name__ == "__main__":
    run(main, name="unlearncanvas")
