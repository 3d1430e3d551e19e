"""Stage multi_evaluate (``concepts``): every forgotten concept's held-out forget (its evaluation
images and forget test split), the retained identities, ImageNet and the other kinds, before and
after the patch stack (loaded from disk: what ships is measured), one pass each."""

from __future__ import annotations

import torch

from pipeline.entry import metrics_path, run
from pipeline.evaluate.sets import standard_sets
from pipeline.evaluate.stream import TarPairs
from pipeline.evaluate.unlearning import held_out, many_inputs
from pipeline.io import skipped, write_json
from pipeline.models.factory import from_params
from pipeline.params import Params
from pipeline.sets.build import require_split
from pipeline.sets.many import concept_dir
from pipeline.unlearn import multi as M
from pipeline.unlearn import patch as patch_mod
from pipeline.unlearn import stack as S


def main(p: Params) -> None:
    stack_dir = p.multi.stack
    if why := skipped(stack_dir):
        write_json(metrics_path("multi_evaluate"), {"skipped": why})
        return print(f"multi_evaluate: skipped ({why})")
    torch.manual_seed(p.seed)
    b, d, e = from_params(p.model, p.device), p.data, p.evaluate
    stack = S.load(stack_dir)
    concepts = [M.concept_of(x) for x in stack.patches]
    x = many_inputs(standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas,
                                  p.eval.templates), b, concepts, d.celeba, e.frequent,
                    e.imagenet_images, p.seed, e.batch_size)
    tests = [TarPairs(require_split(concept_dir(p.multi.sets, n), "forget_test"), b.preprocess)
             for n in p.concepts]
    before = held_out(b.model, b.tokenizer, x, concepts, tests)[0]
    originals = S.apply(b.model, stack)
    try:
        after = held_out(b.model, b.tokenizer, x, concepts, tests)[0]
    finally:
        patch_mod.revert(b.model, originals)
    write_json(metrics_path("multi_evaluate"), {"strategy": stack.strategy, "before": before,
                                                "after": after, "reached": stack.reached})
    print(f"multi_evaluate: {len(concepts)} concepts; celeba retain "
          f"{before['celeba']['top1']:.3f} -> {after['celeba']['top1']:.3f}")


if __name__ == "__main__":
    run(main)
