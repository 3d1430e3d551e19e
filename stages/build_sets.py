"""Stage build_sets: the concept resolved once among the evaluation sets' class names, then the
forget (search/test), retain (train/validation) and non-member tars, and their manifest."""

from __future__ import annotations

from pathlib import Path

from pipeline.concept import lookup
from pipeline.datasets.shards import data_shards, nonmember_shards
from pipeline.entry import metrics_path, run
from pipeline.io import sha256_file, write_json
from pipeline.params import Params
from pipeline.sets.build import MANIFEST, SetsConfig, build_sets
from pipeline.sets.filter import read_index
from pipeline.sets.match import ConceptMatcher


def main(p: Params) -> None:
    concept = lookup(p.concept, p.concept_kind, p.filter.aliases, p.data, p.eval.templates)
    rows = read_index(p.filter.out)
    s = p.sets
    nonmembers = nonmember_shards(p.data) if s.n_nonmembers else []
    manifest = build_sets(data_shards(p.data), rows,
                          ConceptMatcher(concept.name, concept.aliases),
                          SetsConfig.from_params(s, p.seed, p.data), Path(s.out), nonmembers)
    manifest.update(concept=concept.to_dict(), index_sha256=sha256_file(p.filter.out))
    write_json(Path(s.out) / MANIFEST, manifest)
    write_json(metrics_path("build_sets"), {
        "concept": concept.label, "splits": {k: v["n"] for k, v in manifest["splits"].items()},
        "skipped": manifest["skipped"], "on_damaged_shard": p.data.on_damaged_shard})
    sizes = ", ".join(f"{k} {v['n']}" for k, v in manifest["splits"].items())
    print(f"build_sets: {concept.kind} {concept.label!r}: {sizes}; skipped {manifest['skipped']}")


if __name__ == "__main__":
    run(main)
