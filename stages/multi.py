"""Stage multi (benchmarks/multiconcept): the concepts of a ``multi_sets`` folder forgotten at once
by one strategy (``pipeline.unlearn.multi``: joint | sequential), the patch stack written, and
every concept's held-out forget, the retained identities, ImageNet and the other kinds measured
before and after the stack, in one pass each; times recorded.

    python -m stages.multi --sets DIR --strategy joint --rounds 2 --out DIR [--selectivity nullspace]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from pipeline.entry import run
from pipeline.evaluate.sets import scorer_kinds, standard_sets
from pipeline.evaluate.unlearning import many_inputs
from pipeline.io import write_json
from pipeline.models.factory import from_params
from pipeline.models.structure import state_dict_hash
from pipeline.params import SELECTIVITY, Params
from pipeline.progress import progress
from pipeline.unlearn import multi as M
from pipeline.unlearn import stack as S


def main(p: Params) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", required=True, help="a multi_sets folder")
    ap.add_argument("--strategy", required=True, choices=M.STRATEGIES)
    ap.add_argument("--rounds", type=int, default=2, help="joint: search passes at most")
    ap.add_argument("--out", required=True, help="writes stack/ and metrics.json here")
    ap.add_argument("--selectivity", choices=SELECTIVITY,
                    help="every step's (default: unlearn.selectivity)")
    args = ap.parse_args(sys.argv[1:])
    torch.manual_seed(p.seed)
    b, d, e = from_params(p.model, p.device), p.data, p.evaluate
    sets = standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas, p.eval.templates)
    reqs, retain, val = M.load_requests(args.sets, b.preprocess, b.tokenizer)
    base = state_dict_hash(b.model)
    judge = M.clip_scorers(b.model, b.tokenizer, scorer_kinds(sets), val, p.unlearn)
    res = M.forget(args.strategy, b.model, reqs, retain, judge, p.unlearn, p.rank, p.gradients,
                   args.rounds, progress, selectivity=args.selectivity)
    stack = S.Stack(res.strategy, base, M.patches(b.model, res, reqs, lambda r: {
        "concept": r.concept.label, "kind": r.concept.kind, "base_model": b.describe()}))
    S.save(stack, Path(args.out) / "stack")
    x = many_inputs(sets, b, [r.concept for r in reqs], d.celeba, e.frequent, e.imagenet_images,
                    p.seed, e.batch_size)
    before, after, eval_s = M.measure(b.model, b.tokenizer, x, args.sets,
                                      Path(args.out) / "stack", b.preprocess)
    write_json(Path(args.out) / "metrics.json",
               M.record(res, before, after, {"evaluate_after": round(eval_s, 2)}))
    print(f"multi: {res.strategy} ({res.selectivity}), {len(reqs)} concepts, reached {res.reached}; unlearning "
          f"{res.time_s['total']} s, evaluation {eval_s:.1f} s")


if __name__ == "__main__":
    run(main)
