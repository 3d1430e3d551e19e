"""Stage vlm_sets: the retained concepts' images the VLM is asked about (the first
``vlm.sets.retained_per_kind`` other names of each kind it is asked to name), from the shard
samples whose caption names one of them alone: a search and a held-out eval tar, labelled in a
manifest. The target's images are its forget splits (build_sets)."""

from __future__ import annotations

from pipeline.datasets.shards import data_shards
from pipeline.entry import metrics_path, run
from pipeline.evaluate.sets import classnames, standard_sets
from pipeline.io import atomic_dir, write_json
from pipeline.params import VLM_KINDS, Params
from pipeline.sets.build import read_concept
from pipeline.vlm import sets as vs


def main(p: Params) -> None:
    s, d = p.vlm.sets, p.data
    concept = read_concept(p.sets.out)
    names = classnames(standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas,
                                     p.eval.templates))
    chosen = vs.retained(names, concept, s.retained_per_kind, VLM_KINDS)
    with atomic_dir(s.out) as tmp:
        manifest = vs.build(data_shards(d), chosen, concept, s.search_images,
                            s.eval_images, p.seed, tmp)
    write_json(metrics_path("vlm_sets"), {
        "concept": concept.label, "retained": manifest["concepts"], "skipped": manifest["skipped"],
        "images": {k: v["n"] for k, v in manifest["splits"].items()}})
    print(f"vlm_sets: {len(chosen)} retained concepts; "
          + ", ".join(f"{k} {v['n']}" for k, v in manifest["splits"].items()))


if __name__ == "__main__":
    run(main)
