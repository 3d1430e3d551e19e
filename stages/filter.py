"""Stage filter: which shard captions mention the concept (parquet metadata only)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from pipeline.datasets.shards import list_shards
from pipeline.io import write_json, write_text
from pipeline.params import Params
from pipeline.sets.filter import filter_shards
from pipeline.sets.match import ConceptMatcher

from ._common import run

METRICS = Path("metrics/filter.json")


def main(p: Params) -> None:
    matcher = ConceptMatcher(p.concept, p.filter.aliases)
    result = filter_shards(list_shards(p.data.shards), matcher, p.filter.max_matches)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["shard", "key", "caption"])
    w.writeheader()
    w.writerows(result.rows)
    write_text(p.filter.out, buf.getvalue())
    write_json(METRICS, {"concept": p.concept, "aliases": p.filter.aliases,
                         "matches": len(result.rows), "scanned": result.scanned,
                         "capped": result.capped, "per_shard": result.per_shard})
    print(f"filter: {len(result.rows)} captions mention {p.concept!r} "
          f"({result.scanned} scanned{', capped' if result.capped else ''})")


if __name__ == "__main__":
    run(main)
