"""Benchmark: the shard scans (the ``filter`` and ``build_sets`` work) serial against
``data.workers`` processes, on the tiny world (measured).

In this process, with the committed params (concept, aliases, sets sizes, seed): the caption scan
(``filter_shards``) and the set build (``build_sets``: the retain sample from the parquet files,
then one pass over the tars for every wanted sample, then the split tars) into a scratch folder,
with 1 and with N worker processes, alternating, each repeated (median reported, every repeat
recorded). The outputs of every run are compared byte for byte (index rows, split tars, manifest).
Run after the tiny world exists (``dvc repro tiny/dvc.yaml:tinyworld``):

    python -m bench.shard_scan              # writes bench/shard_scan.json
    python -m bench.shard_scan --repeats 1  # quicker, to stdout only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from pipeline.concept import lookup
from pipeline.datasets.shards import data_shards, nonmember_shards
from pipeline.io import write_json
from pipeline.params import load as load_params
from pipeline.sets.build import SetsConfig, build_sets
from pipeline.sets.filter import filter_shards
from pipeline.sets.match import ConceptMatcher

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "shard_scan.json"


def one_run(p, workers: int, out: Path) -> tuple[float, float, bytes]:
    """(filter s, build s, every output's bytes) with ``workers`` processes."""
    c = lookup(p.concept, p.concept_kind, p.filter.aliases, p.data, p.eval.templates)
    matcher = ConceptMatcher(c.name, c.aliases)
    cfg = dataclasses.replace(SetsConfig.from_params(p.sets, p.seed, p.data), workers=workers)
    start = time.perf_counter()
    rows = filter_shards(data_shards(p.data), ConceptMatcher(p.concept, p.filter.aliases),
                         p.filter.max_matches, workers).rows
    mid = time.perf_counter()
    man = build_sets(data_shards(p.data), rows, matcher, cfg, out, nonmember_shards(p.data))
    end = time.perf_counter()
    blob = json.dumps([rows, man], sort_keys=True).encode()
    blob += b"".join(f.read_bytes() for f in sorted(out.glob("*.tar")))
    return mid - start, end - mid, blob


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.chdir(ROOT)
    p = load_params(ROOT / "params.yaml")
    runs: dict[int, list] = {1: [], args.workers: []}
    blobs = set()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for w in runs:
                f, b, blob = one_run(p, w, Path(tmp) / f"{w}-{r}")
                runs[w].append({"filter_s": round(f, 2), "build_sets_s": round(b, 2)})
                blobs.add(blob)
    med = {w: statistics.median(x["filter_s"] + x["build_sets_s"] for x in rs)
           for w, rs in runs.items()}
    result = {
        "what": "filter_shards + build_sets on the tiny world, in process, committed params",
        "shards": len(data_shards(p.data)), "cpus": os.cpu_count(),
        "identical_outputs": len(blobs) == 1,
        "runs": {str(w): rs for w, rs in runs.items()},
        "median_s": {str(w): round(m, 2) for w, m in med.items()},
        "ratio_parallel_over_serial": round(med[args.workers] / med[1], 3),
    }
    print(json.dumps(result, indent=1))
    if args.repeats >= 3:
        write_json(OUT, result)


if __name__ == "__main__":
    main()
