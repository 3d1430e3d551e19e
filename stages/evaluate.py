"""Stage evaluate: held-out metrics before and after the patch, MIA, cosine-similarity figures;
the naive max-importance layer at its searched step, side by side."""

from __future__ import annotations

import sys
import time

import torch

from pipeline.entry import metrics_path, plots_dir, run
from pipeline.evaluate import unlearning as E
from pipeline.evaluate.sets import standard_sets
from pipeline.evaluate.unlearning import eval_inputs
from pipeline.io import write_json
from pipeline.models.factory import from_params
from pipeline.params import Params
from pipeline.report.figures import plot_cosine
from pipeline.sets.build import read_concept
from pipeline.unlearn import patch as patch_mod
from pipeline.unlearn import workflow as W


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    bundle = from_params(p.model, p.device)
    model, tok, e = bundle.model, bundle.tokenizer, p.evaluate
    patch = patch_mod.load(p.unlearn.out)
    patch_mod.check_base(model, patch)  # before any heavy work
    concept = read_concept(p.sets.out)
    start, d = time.time(), p.data
    x = eval_inputs(standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas,
                                  p.eval.templates), bundle, concept, p.sets.out,
                    p.sets.n_nonmembers > 0, d.celeba, e.frequent, e.imagenet_images, p.seed,
                    e.batch_size)
    ba = E.before_after(model, tok, x, patch, e.mia_seeds, e.matrix_images_per_class)
    naive = W.read_trace(p.unlearn.trace)["naive"]
    if naive["reached_target"]:
        grad = W.read_grads(p.gradients.out)[naive["layer"]]
        naive = {"layer": naive["layer"], "lambda": naive["lambda"], "after": E.with_edit(
            model, tok, x, naive["layer"], grad, naive["lambda"], e.mia_seeds)}
    plot_cosine(ba.matrix_before, ba.matrix_after, ba.matrix_rows,
                x.sets[concept.kind].classnames, concept.label, plots_dir("evaluate") / "cosine.png")
    write_json(metrics_path("evaluate"), {
        "concept": concept.label, "kind": concept.kind, "layer": patch.manifest["layers"],
        "search_reached": patch.manifest["search"]["reached"],  # false: the strongest trial
        "before": ba.before, "after": ba.after, "delta": E.delta(ba.before, ba.after),
        "naive_max_importance": naive if naive.get("after") else None,
        "time_s": round(time.time() - start, 2)})
    b, a = ba.before, ba.after
    print(f"evaluate: forget top-1 {b['forget']['top1']:.3f} -> {a['forget']['top1']:.3f}, celeba "
          f"retain {b['celeba']['top1']:.3f} -> {a['celeba']['top1']:.3f}, imagenet "
          f"{b['imagenet']['top1']:.3f} -> {a['imagenet']['top1']:.3f}")
    if "mia_skipped" in b:
        print(f"warning: evaluate: membership inference skipped: {b['mia_skipped']}",
              file=sys.stderr)


if __name__ == "__main__":
    run(main)
