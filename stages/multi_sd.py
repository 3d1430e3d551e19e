"""Stage multi_sd (benchmarks/multiconcept): the concepts of a ``multi_sets`` folder forgotten at
once from the diffusion pipeline's text encoder (``pipeline.diffusion.multi``), judged as
``sd.search.judge`` says; the stack checked on the encoder, every target's and the retained
concepts' generations judged on the evaluation seeds, before and after; the image grid."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pipeline.diffusion import evaluate as G
from pipeline.diffusion import multi as DM
from pipeline.diffusion import sd as sd_mod
from pipeline.entry import run
from pipeline.evaluate.sets import scorer_kinds, standard_sets
from pipeline.io import write_json
from pipeline.models.factory import from_params
from pipeline.models.structure import state_dict_hash
from pipeline.params import Params
from pipeline.progress import progress
from pipeline.report.generations import plot_grid
from pipeline.unlearn import multi as M
from pipeline.unlearn import stack as S

ARGS = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ARGS.add_argument("--sets", required=True, help="a multi_sets folder")
ARGS.add_argument("--strategy", required=True, choices=M.STRATEGIES)
ARGS.add_argument("--rounds", type=int, default=2, help="joint: search passes at most")
ARGS.add_argument("--images", type=int, default=16, help="evaluation images per prompt")
ARGS.add_argument("--out", required=True, help="writes stack/ and metrics.json here")
ARGS.add_argument("--grid", required=True, help="the image grid (png)")


def main(p: Params) -> None:
    a = ARGS.parse_args()
    torch.manual_seed(p.seed)
    b, d = from_params(p.model, p.device), p.data
    pipe = sd_mod.load(p.sd.pipeline)
    sd_mod.check_text_encoder(pipe.text_encoder, b.model, atol=1e-6)  # before heavy work
    sets = standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas, p.eval.templates)
    reqs, retain, val = M.load_requests(a.sets, b.preprocess, b.tokenizer)
    base = state_dict_hash(b.model)
    res = DM.forget(pipe, b, sets, scorer_kinds(sets), reqs, retain, val, a.strategy, a.rounds,
                    p.sd.search, p.sd.evaluate, p.unlearn, p.rank, p.gradients, p.seed, progress)
    S.save(S.Stack(res.strategy, base, M.patches(b.model, res, reqs, lambda r: {
        "concept": r.concept.label, "kind": r.concept.kind, "base_model": b.describe(),
        "tower": "text", "seed": p.seed})), Path(a.out) / "stack")
    stack = S.load(Path(a.out) / "stack")  # what ships is what is measured
    g, prompts, m = DM.evaluate(pipe, b, sets, stack, reqs, p.sd.evaluate, p.seed, a.images)
    plot_grid(g.before, g.after, prompts, G.grid_rows(prompts, 1), a.images,
              p.sd.evaluate.grid_images, a.grid, " + ".join(stack.concepts))
    write_json(Path(a.out) / "metrics.json", {**M.summary(res), "judge": p.sd.search.judge, **m})
    print(f"multi_sd: {res.strategy}; forgotten {m['generations']['forgotten']}")


if __name__ == "__main__":
    run(main)
