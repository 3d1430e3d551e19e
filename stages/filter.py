"""Stage filter: which shard captions mention the concept (parquet metadata only). The concept is
first checked against the evaluation sets' class names (``concept.lookup``), so an unknown
one fails here, before the scan, with the line ``slug check`` prints."""

from __future__ import annotations

from pipeline.concept import lookup
from pipeline.datasets.shards import data_shards
from pipeline.entry import metrics_path, run
from pipeline.io import write_json
from pipeline.params import Params
from pipeline.sets.filter import filter_shards, write_index
from pipeline.sets.match import ConceptMatcher


def main(p: Params) -> None:
    lookup(p.concept, p.concept_kind, p.filter.aliases, p.data, p.eval.templates)
    matcher = ConceptMatcher(p.concept, p.filter.aliases)
    result = filter_shards(data_shards(p.data), matcher, p.filter.max_matches,
                           p.data.workers)
    write_index(p.filter.out, result.rows)
    write_json(metrics_path("filter"), {
        "concept": p.concept, "aliases": p.filter.aliases, "matches": len(result.rows),
        "scanned": result.scanned, "capped": result.capped, "per_shard": result.per_shard,
        "skipped_captions": {"total": sum(result.bad_captions.values()),
                             "per_shard": result.bad_captions,
                             "why": "null or not a string"}})
    print(f"filter: {len(result.rows)} captions mention {p.concept!r} "
          f"({result.scanned} scanned{', capped' if result.capped else ''})")


if __name__ == "__main__":
    run(main)
