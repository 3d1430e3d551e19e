"""Stage multi_table (benchmarks/multiconcept): every run's metrics in one table
(``metrics/multi.json``, ``plots/multi/runs.csv``) and the curve of what is retained against the
number of identities forgotten at once, a line per strategy (``plots/multi/curve.png``); the
diffusion-path runs (``--sd``) beside them.

    python -m stages.multi_table --runs DIR --sd DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.entry import metrics_path, plots_dir, run
from pipeline.errors import DataError
from pipeline.io import write_csv, write_json
from pipeline.params import Params
from pipeline.report import multi as R


def main(p: Params) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="<strategy>/<run>/metrics.json under it")
    ap.add_argument("--sd", required=True, help="<strategy>/metrics.json under it")
    args = ap.parse_args(sys.argv[1:])
    found = sorted(Path(args.runs).glob("*/*/metrics.json"))
    if not found:
        raise DataError(f"no run under {args.runs}; run the benchmark's multi stages first")
    rows = [R.row(f.parent.parent.name, f.parent.name, json.loads(f.read_text()))
            for f in found]
    rows.sort(key=lambda r: (r["strategy"], r["run"] != "three", r["concepts"]))
    plots = plots_dir("multi")
    write_csv(plots / "runs.csv", rows, R.FIELDS)
    R.plot_curve(rows, plots / "curve.png")
    sd = [R.sd_row(f.parent.name, json.loads(f.read_text()))
          for f in sorted(Path(args.sd).glob("*/metrics.json"))]
    write_json(metrics_path("multi"), {"runs": rows, "sd": sd})
    print(f"multi_table: {len(rows)} runs")


if __name__ == "__main__":
    run(main)
