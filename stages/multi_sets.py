"""Stage multi_sets (benchmarks/multiconcept): the concepts of one run resolved, each one's forget
search and test splits (split as it would be alone) and one retain split that names none of them,
in one pass over the shards.

    python -m stages.multi_sets --count 8 --out DIR        # the first 8 frequent identities
    python -m stages.multi_sets --concepts "Elon Musk" "Iron Man" --out DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.concept import lookup
from pipeline.datasets.shards import data_shards
from pipeline.entry import run
from pipeline.io import write_json
from pipeline.params import Params
from pipeline.sets.build import MANIFEST, SetsConfig
from pipeline.sets.filter import filter_shards
from pipeline.sets.many import build_many, check_distinct, first_identities
from pipeline.sets.match import ConceptMatcher


def main(p: Params) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--count", type=int, help="the first N of CelebA's frequent identities")
    who.add_argument("--concepts", nargs="+", help="the concepts, by name")
    ap.add_argument("--keep", type=int, default=4, help="with --count: identities never forgotten")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(sys.argv[1:])
    d = p.data
    wanted = args.concepts or first_identities(d.celeba, args.count, args.keep)
    concepts = [lookup(n, "auto", (), d, p.eval.templates) for n in wanted]
    check_distinct(concepts)
    shards = data_shards(d)
    rows = {c.label: filter_shards(shards, ConceptMatcher(c.name), p.filter.max_matches,
                                    d.workers).rows
            for c in concepts}
    anyone = ConceptMatcher(concepts[0].name, [c.name for c in concepts[1:]])
    manifest = build_many(shards, rows, anyone, SetsConfig.from_params(p.sets, p.seed, p.data),
                          Path(args.out) / "concepts", args.out)
    manifest["concepts_resolved"] = [c.to_dict() for c in concepts]
    write_json(Path(args.out) / MANIFEST, manifest)
    sizes = ", ".join(f"{c} {v['forget_search']['n']}/{v['forget_test']['n']}"
                      for c, v in manifest["concepts"].items())
    print(f"multi_sets: {len(concepts)} concepts (forget search/test: {sizes}); retain "
          f"{manifest['splits']['retain']['n']}, retain_val {manifest['splits']['retain_val']['n']}")


if __name__ == "__main__":
    run(main)
