"""Stage summary: one short row per experiment (held-out numbers, in %), for ``dvc exp show``;
it fails when its inputs are about different concepts."""

from __future__ import annotations

import json

from pipeline.entry import metrics_path, run
from pipeline.io import write_json
from pipeline.params import Params
from pipeline.report.summary import summary


def main(p: Params) -> None:
    read = {name: json.loads(metrics_path(name).read_text())
            for name in ("unlearn", "evaluate", "sd_evaluate")}
    row = summary(read["unlearn"], read["evaluate"], read["sd_evaluate"])
    write_json(metrics_path("summary"), row)
    print("summary: " + ", ".join(f"{k} {v}" for k, v in row.items()))


if __name__ == "__main__":
    run(main)
