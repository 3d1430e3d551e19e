"""Stage build_sets: forget (search/test), retain (train/validation) and non-member tars."""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.datasets.shards import list_shards
from pipeline.errors import DataError
from pipeline.io import sha256_file, write_json
from pipeline.params import Params
from pipeline.sets.build import SetsConfig, build_sets
from pipeline.sets.match import ConceptMatcher

from ._common import run


def main(p: Params) -> None:
    index = Path(p.filter.out)
    if not index.exists():
        raise DataError(f"{index} is missing; run the filter stage first")
    with open(index, newline="") as f:
        rows = list(csv.DictReader(f))
    s = p.sets
    cfg = SetsConfig(seed=p.seed, test_fraction=s.test_fraction, n_retain=s.n_retain,
                     n_retain_val=s.n_retain_val, n_nonmembers=s.n_nonmembers)
    nonmembers = list_shards(p.data.nonmembers) if s.n_nonmembers else []
    manifest = build_sets(list_shards(p.data.shards), rows, ConceptMatcher(p.concept, p.filter.aliases),
                          cfg, Path(s.out), nonmembers)
    manifest.update(concept=p.concept, index_sha256=sha256_file(index))
    write_json(Path(s.out) / "manifest.json", manifest)
    sizes = ", ".join(f"{k} {v['n']}" for k, v in manifest["splits"].items())
    print(f"build_sets: {sizes}; skipped {manifest['skipped']}")


if __name__ == "__main__":
    run(main)
