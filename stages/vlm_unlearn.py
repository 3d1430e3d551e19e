"""Stage vlm_unlearn: SLUG on the *vision* tower a VLM reads, ranked among the layers before its
``vision_feature_layer``. The step is searched on the VLM's own answers (``vlm.search.judge:
answers``: the target's forget-search images and the retained concepts' search images) or as the
reference does, by CLIP zero-shot on the forget-search split (``clip``). The patch is mapped onto
the VLM's tower and checked to give the hidden state it reads as open_clip does."""

from __future__ import annotations

import torch

from pipeline.entry import metrics_path, run
from pipeline.evaluate.sets import scorer_kinds, standard_sets
from pipeline.io import sha256_file, write_json
from pipeline.models.factory import from_params
from pipeline.params import VLM_KINDS, Params
from pipeline.progress import progress
from pipeline.sets.build import load_split, read_concept
from pipeline.unlearn import workflow as W
from pipeline.vlm import llava
from pipeline.vlm import unlearn as U
from pipeline.vlm import vision_tower as vt


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    v, u, d = p.vlm, p.unlearn, p.data
    bundle = from_params(p.model, p.device)
    vlm, processor = llava.load(v.model, bundle.device)
    tower = vlm.model.vision_tower
    vt.check_vision_tower(tower, bundle.model, atol=1e-6)  # before heavy work
    concept = read_concept(p.sets.out)
    if why := U.skip_unless_asked(concept, VLM_KINDS, v.patch):
        write_json(metrics_path("vlm_unlearn"), {"concept": concept.label, "skipped": why})
        return print(f"vlm_unlearn: skipped ({why})")
    f = vlm.config.vision_feature_layer
    grads = W.read_grads(p.gradients.out)
    layers = U.layers(W.read_layers(p.gradients.out), grads, p.rank,
                      tower.config.num_hidden_layers, f)
    forget = U.target_questions(p.sets.out, concept, v, llava.preprocess(processor))
    retain = load_split(p.sets.out, "retain", bundle.preprocess, bundle.tokenizer) \
        if u.selectivity != "none" else None
    kinds = lambda: scorer_kinds(standard_sets(d.celeba, d.characters, d.imagenet,  # noqa: E731
                                               d.unlearncanvas, p.eval.templates))
    res, target = U.search(bundle, vlm, processor, concept, grads, layers, forget, v, u,
                           p.sets.out, kinds, retain, progress)
    patch = U.make_patch(res, bundle, concept, v.search.judge, target, {
        "gradients_sha256": sha256_file(f"{p.gradients.out}/{W.GRADS}"), "seed": p.seed})
    mapped = vt.map_patch(patch.tensors, tower)
    errors = U.check_mapping(bundle.model, tower, res, mapped, forget.pixels[:64], f)
    U.save(patch, mapped, v.patch)
    write_json(metrics_path("vlm_unlearn"),
               U.metrics(res, concept, layers, v.search.judge, target, mapped, errors, f))
    print(f"vlm_unlearn: {res.layer} at {res.rel_step:.3f} x ||theta|| (reached {res.reached}); "
          f"search forget {res.before[0]:.3f} -> {res.trial.forget:.3f}, retain "
          f"{res.before[1]:.3f} -> {res.trial.retain:.3f}; mapping error {max(errors):.1e}")


if __name__ == "__main__":
    run(main)
