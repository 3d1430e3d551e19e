"""Stage multi_retain (``concepts``): the retain and retain-validation splits of several concepts
forgotten at once, sampled from the shard samples whose caption names none of them (nor their
``multi.aliases``), in ``multi.retain``. With no ``concepts``, a skip."""

from __future__ import annotations

from pathlib import Path

from pipeline.datasets.shards import data_shards
from pipeline.entry import run
from pipeline.io import save_skipped, write_json
from pipeline.params import Params
from pipeline.sets.build import MANIFEST, SetsConfig
from pipeline.sets.many import build_many, for_concept
from pipeline.sets.match import ConceptMatcher


def main(p: Params) -> None:
    out = p.multi.retain
    if not p.concepts:
        save_skipped(out, "no concepts requested (params: concepts)")
        return print("multi_retain: skipped (no concepts)")
    terms = [t for c in p.concepts for t in (c, *for_concept(c, p.multi.aliases, ()))]
    man = build_many(data_shards(p.data), {}, ConceptMatcher(terms[0], terms[1:]),
                     SetsConfig.from_params(p.sets, p.seed, p.data), None, out)
    write_json(Path(out) / MANIFEST, {**man, "excluded": terms})
    print(f"multi_retain: retain {man['splits']['retain']['n']}, retain_val "
          f"{man['splits']['retain_val']['n']}, none naming {', '.join(p.concepts)}")


if __name__ == "__main__":
    run(main)
