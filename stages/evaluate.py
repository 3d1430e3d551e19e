"""Stage evaluate: held-out metrics before and after the patch, MIA, cosine-similarity figures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from pipeline.evaluate.unlearning import EvalInputs, cosine_matrix, evaluate
from pipeline.io import write_json
from pipeline.models import build
from pipeline.params import Params
from pipeline.report.figures import plot_cosine
from pipeline.unlearn import patch as patch_mod
from pipeline.unlearn.slug import edited

from ._common import eval_inputs, run

METRICS = Path("metrics/evaluate.json")
FIGURE = Path("plots/evaluate/cosine.png")


def _naive(p: Params, model, tokenizer, x: EvalInputs) -> dict | None:
    """Held-out metrics of the layer a max-importance rule picks, at its searched step (the
    side-by-side that shows why SLUG ranks layers by alignment too)."""
    info = json.loads(Path("metrics/unlearn.json").read_text()).get("naive") or {}
    if not info.get("reached_target"):
        return None
    grads = load_file(str(Path(p.gradients.out) / "forget_grads.safetensors"))
    param = dict(model.named_parameters())[info["layer"]]
    with edited(param, grads[info["layer"]], info["lambda"]):
        res = evaluate(model, tokenizer, x, p.evaluate.mia_seeds)
    return {"layer": info["layer"], "lambda": info["lambda"], "after": res}


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    m = p.model
    bundle = build(m.name, m.pretrained, m.quick_gelu, m.precision, p.device)
    patch = patch_mod.load(p.unlearn.out)
    patch_mod.check_base(bundle.model, patch)  # before any heavy work
    start = time.time()
    x = eval_inputs(p, bundle)
    sets, images, kind = x.sets, x.images, x.kind

    before = evaluate(bundle.model, bundle.tokenizer, x, p.evaluate.mia_seeds)
    mat_before, rows = cosine_matrix(bundle.model, bundle.tokenizer, sets[kind], images[kind],
                                     p.evaluate.matrix_images_per_class)
    originals = patch_mod.apply(bundle.model, patch)
    after = evaluate(bundle.model, bundle.tokenizer, x, p.evaluate.mia_seeds)
    mat_after, _ = cosine_matrix(bundle.model, bundle.tokenizer, sets[kind], images[kind],
                                 p.evaluate.matrix_images_per_class)
    patch_mod.revert(bundle.model, originals)
    naive = _naive(p, bundle.model, bundle.tokenizer, x)
    plot_cosine(mat_before, mat_after, rows, sets[kind].classnames, p.concept, FIGURE)

    def delta(a, b):
        return {k: (delta(a[k], b[k]) if isinstance(a[k], dict) else
                    (None if a[k] is None else b[k] - a[k])) for k in a}

    write_json(METRICS, {"concept": p.concept, "kind": kind, "layer": patch.manifest["layers"],
                         "before": before, "after": after, "delta": delta(before, after),
                         "naive_max_importance": naive,
                         "time_s": round(time.time() - start, 2)})
    f, c, i = after["forget"]["top1"], after["celeba"]["top1"], after["imagenet"]["top1"]
    print(f"evaluate: forget top-1 {before['forget']['top1']:.3f} -> {f:.3f}, celeba retain "
          f"{before['celeba']['top1']:.3f} -> {c:.3f}, imagenet {before['imagenet']['top1']:.3f} "
          f"-> {i:.3f}")


if __name__ == "__main__":
    run(main)
