"""Stage concept_sets@<concept> (``concepts``: several at once): one concept resolved among the
evaluation sets' class names, and its forget search and test splits, split as the concept alone
gets them (``build_sets``), in ``multi.sets/<concept>``. DVC caches it per concept."""

from __future__ import annotations

import argparse
import sys

from pipeline.concept import lookup
from pipeline.datasets.shards import data_shards
from pipeline.entry import run
from pipeline.io import write_json
from pipeline.params import Params
from pipeline.sets.build import MANIFEST, SetsConfig
from pipeline.sets.filter import filter_shards
from pipeline.sets.many import build_many, concept_dir, for_concept
from pipeline.sets.match import ConceptMatcher


def main(p: Params) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("concept", help="an item of `concepts` (dvc.yaml's foreach passes it)")
    name = ap.parse_args(sys.argv[1:]).concept
    m = p.multi
    c = lookup(name, for_concept(name, m.kinds, "auto"), tuple(for_concept(name, m.aliases, ())),
               p.data, p.eval.templates)
    shards = data_shards(p.data)
    rows = filter_shards(shards, ConceptMatcher(c.name, c.aliases), p.filter.max_matches,
                         p.data.workers).rows
    man = build_many(shards, {name: rows}, None, SetsConfig.from_params(p.sets, p.seed, p.data),
                     p.multi.sets, None)
    write_json(concept_dir(p.multi.sets, name) / MANIFEST,
               {**man, "concept": c.to_dict(), "matches": len(rows)})
    n = man["concepts"][name]
    print(f"concept_sets: {c.kind} {c.label!r}: forget_search {n['forget_search']['n']}, "
          f"forget_test {n['forget_test']['n']}")


if __name__ == "__main__":
    run(main)
