"""Benchmark: SLUG's time to forget against the iterative baselines', as the compare stage times
it, on three concepts (an identity and two characters), median of 3 runs each.

For each concept the pipeline's filter and build_sets stages build its sets in a scratch folder
with the committed params (``bench.scaling.build``); then, in this process and on one loaded model
(base weights restored before every run), ``bench.scaling.one_size`` times:

* SLUG: ``slug.unlearn`` end to end (gradient pass with the 1,024-pair retain split, ranking, the
  step search), its scorer built inside the timed region, as ``compare.run_comparison``;
* SLUG (pooled retain): the same, with the amortised retain gradient: the retain pool (built once
  for the three concepts; its gradient pass is the one-time cost, reported beside) without the
  concept's own pairs (``pipeline.unlearn.retain_pool``);
* GA, GAFT, SalUn (ref.): ``baselines.run_method`` at the committed rates and the committed
  stop-rule schedule (``baselines.checks_per_epoch``), as compare.

    python -m bench.time_to_forget     # writes bench/time_to_forget.json (about 6 min, 2 cores)
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.scaling import REPEATS, build, one_size, provenance, ratio, table
from pipeline import params as params_mod
from pipeline.io import write_json

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench/time_to_forget.json"
CONCEPTS = ("Elon Musk", "Iron Man", "Mickey Mouse")


def main() -> dict:
    t0, rows, bench, cwd = time.perf_counter(), [], None, os.getcwd()
    for concept in CONCEPTS:
        folder = Path(tempfile.mkdtemp(prefix="ttf_"))
        try:
            info = {"size": concept, **build(folder, None, concept)}
            os.chdir(folder)
            bench, row = one_size(bench, params_mod.load(), info, REPEATS, check_every=None)
            rows.append(row)
        finally:
            os.chdir(cwd)
            shutil.rmtree(folder, ignore_errors=True)
    p = params_mod.load(ROOT / "params.yaml")
    results = {
        "what": "time to forget (s) per method and concept, as compare times it; median of "
                f"{REPEATS}; the committed params (stop rule, retain size, rates, check schedule)",
        "repeats": REPEATS, "checks_per_epoch": p.baselines.checks_per_epoch,
        "pool": {"n": p.pool.n, "one_time_s": round(bench.pool_s, 3)},
        **provenance(p), "sizes": rows,
        "ratios": {r["concept"]: {"fastest": ratio(r)[0], "over_slug": ratio(r)[1],
                                  "over_slug_pool": ratio(r, "slug_pool")[1]} for r in rows},
        "bench_s": round(time.perf_counter() - t0, 1)}
    write_json(OUT, results)
    print(table(results, key="concept"), file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
