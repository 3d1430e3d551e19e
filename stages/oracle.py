"""Stage oracle: the retrain oracle. The tiny CLIP pretrained again with the same recipe and seed
(``pretrain.*``) on the shards *without* the pairs whose caption names the concept (the filter's
matcher: the concept and ``filter.aliases``); unnamed portraits stay, as they would in a real
retrain. Only for the concepts ``oracle.concepts`` lists; for any other concept the stage writes a
manifest that says so and trains nothing, so ``dvc exp run -S concept=...`` does not pay for it.
"""

from __future__ import annotations

import torch

from pipeline.datasets.shards import data_shards
from pipeline.entry import metrics_path, run
from pipeline.evaluate.sets import standard_sets
from pipeline.io import write_json
from pipeline.models.factory import build
from pipeline.params import Params
from pipeline.sets.match import ConceptMatcher
from pipeline.train import oracle
from pipeline.train.clip import TrainConfig, pretrain


def main(p: Params) -> None:
    o, cfg, d = p.oracle, p.pretrain, p.data
    if not oracle.wanted(p.concept, o.concepts):
        write_json(metrics_path("oracle"), oracle.write_skip(o.out, p.concept))
        print(f"oracle: {p.concept!r} is not in oracle.concepts; no retrain")
        return
    torch.manual_seed(p.seed)
    bundle = build(cfg.arch, None, p.model.quick_gelu, "fp32", p.device)
    sets = list(standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas,
                              p.eval.templates).values())
    res = pretrain(bundle, data_shards(d), sets, TrainConfig.from_params(cfg, p.seed),
                   drop=ConceptMatcher(p.concept, p.filter.aliases))
    manifest = oracle.write(o.out, bundle, res, p.concept, p.filter.aliases, cfg.arch, cfg.steps,
                            p.seed)
    write_json(metrics_path("oracle"), {**manifest, "zeroshot": res.zeroshot,
                                        "torch": torch.__version__})
    print(f"oracle: retrained without {res.dropped} pairs naming {p.concept!r}; zero-shot top-1 "
          + ", ".join(f"{k} {v['top1']:.3f}" for k, v in res.zeroshot.items()))


if __name__ == "__main__":
    run(main)
