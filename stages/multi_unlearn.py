"""Stage multi_unlearn (``concepts``): every requested concept forgotten at once by
``multi.strategy`` (``pipeline.unlearn.multi``; joint reads the ``concept_grads`` stage's
gradients), under the stop rule in force; the patch stack in ``multi.stack``."""

from __future__ import annotations

import torch

from pipeline.entry import metrics_path, run
from pipeline.evaluate.sets import scorer_kinds, standard_sets
from pipeline.io import save_skipped, write_json
from pipeline.models.factory import from_params
from pipeline.models.structure import state_dict_hash
from pipeline.params import Params
from pipeline.progress import progress
from pipeline.unlearn import multi as M
from pipeline.unlearn import stack as S


def main(p: Params) -> None:
    stack_dir = p.multi.stack
    if not p.concepts:
        save_skipped(stack_dir, "no concepts requested (params: concepts)")
        write_json(metrics_path("multi_unlearn"), {"skipped": "no concepts requested"})
        return print("multi_unlearn: skipped (no concepts)")
    torch.manual_seed(p.seed)
    b, d = from_params(p.model, p.device), p.data
    base = state_dict_hash(b.model)
    reqs, retain, val = M.requested(p.concepts, p.multi.sets, p.multi.retain, b.preprocess,
                                    b.tokenizer)
    names = {r.concept.label: n for r, n in zip(reqs, p.concepts)}
    kinds = scorer_kinds(standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas,
                                       p.eval.templates))
    res = M.forget(p.multi.strategy, b.model, reqs, retain,
                   M.clip_scorers(b.model, b.tokenizer, kinds, val, p.unlearn), p.unlearn,
                   p.rank, p.gradients, p.multi.rounds, progress, lambda r: M.load_forget_grad(
                       M.grads_dir(p.multi.grads, names[r.concept.label]), base))
    S.save(S.Stack(res.strategy, base, M.patches(b.model, res, reqs, lambda r: {
        "concept": r.concept.label, "kind": r.concept.kind, "base_model": b.describe(),
        "seed": p.seed})), stack_dir)
    write_json(metrics_path("multi_unlearn"), M.summary(res))
    print(f"multi_unlearn: {res.strategy}, {len(reqs)} concepts, reached {res.reached}; "
          f"{res.time_s['total']} s")


if __name__ == "__main__":
    run(main)
