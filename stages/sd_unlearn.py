"""Stage sd_unlearn: SLUG on the *text* tower only (a diffusion pipeline uses no vision tower),
ranked among the layers the pipeline's ``CLIPTextModel`` has. The step is searched either on
generations (``sd.search.judge: generations``, search seeds) or as the reference does, by CLIP
zero-shot on the forget-search split (``clip``). The patch is mapped onto the encoder and checked
to give the same hidden states as open_clip."""

from __future__ import annotations

import torch

from pipeline.diffusion import sd as sd_mod
from pipeline.diffusion import text_encoder as hf_text
from pipeline.diffusion import unlearn as U
from pipeline.entry import metrics_path, run
from pipeline.evaluate.sets import standard_sets
from pipeline.io import sha256_file, write_json
from pipeline.models.factory import from_params
from pipeline.models.structure import state_dict_hash
from pipeline.params import Params
from pipeline.progress import progress
from pipeline.sets.build import load_split, read_concept
from pipeline.unlearn import workflow as W


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    bundle, s, d = from_params(p.model, p.device), p.sd.search, p.data
    pipe = sd_mod.load(p.sd.pipeline)
    sd_mod.check_text_encoder(pipe.text_encoder, bundle.model, atol=1e-6)  # before heavy work
    concept = read_concept(p.sets.out)
    sets = standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas, p.eval.templates)
    grads = W.read_grads(p.gradients.out)
    layers = U.layers(W.read_layers(p.gradients.out), grads, p.rank, pipe.text_encoder)
    forget, retain_val, retain = (load_split(p.sets.out, x, bundle.preprocess, bundle.tokenizer)
                                  if x != "retain" or p.unlearn.selectivity != "none" else None
                                  for x in ("forget_search", "retain_val", "retain"))
    base_hash = state_dict_hash(bundle.model)
    res, target = U.search(pipe, bundle, sets, concept, layers, grads, forget, retain_val, s,
                           p.unlearn, p.sd.evaluate, p.seed, progress, retain)
    patch = res.patch(bundle.model, {"concept": concept.label, "kind": concept.kind},
                      tower="text", base_model=bundle.describe(), base_model_sha256=base_hash,
                      search={"judge": s.judge, "target": target, "forget": res.trial.forget,
                              "retain": res.trial.retain},
                      gradients_sha256=sha256_file(f"{p.gradients.out}/{W.GRADS}"), seed=p.seed,
                      selectivity=res.selectivity)
    mapped = hf_text.map_patch(patch.tensors, pipe.text_encoder)
    errors = U.check_mapping(bundle.model, pipe.text_encoder, res, mapped,
                             bundle.tokenizer(forget.captions[:64] + retain_val.captions[:64]))
    U.save(patch, mapped, p.sd.patch)
    write_json(metrics_path("sd_unlearn"),
               U.metrics(res, concept, layers, s.judge, target, mapped, errors))
    print(f"sd_unlearn: {res.layer} at {res.rel_step:.3f} x ||theta|| -> "
          f"{', '.join(sorted(mapped))}; search forget {res.before[0]:.3f} -> "
          f"{res.trial.forget:.3f}; mapping error {max(errors):.1e}")


if __name__ == "__main__":
    run(main)
