"""Stage sd_unlearn: SLUG on the *text* tower only (a diffusion pipeline uses no vision tower).
The step is searched either on generations (``sd.search.judge: generations``: the pipeline
generates the target's and some retained prompts with search seeds, the tiny CLIP judges them) or
as the reference does, by CLIP zero-shot on the forget-search split (``clip``). The patch is mapped
onto the pipeline's ``CLIPTextModel`` and checked to give the same hidden states as open_clip."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pipeline.datasets.pairs import load_pairs
from pipeline.datasets.shards import Shard
from pipeline.diffusion import judge as J
from pipeline.diffusion import sd as sd_mod
from pipeline.diffusion import text_encoder as hf_text
from pipeline.errors import DataError, NumericalError
from pipeline.evaluate import sets as evalsets
from pipeline.io import atomic_path, sha256_file, write_json
from pipeline.models import build, state_dict_hash
from pipeline.params import Params
from pipeline.progress import progress
from pipeline.unlearn import layers as L
from pipeline.unlearn import patch as patch_mod
from pipeline.unlearn.slug import edited, run_slug
from pipeline.unlearn.trials import TrialScorer

from ._common import kinds_and_target, run

METRICS = Path("metrics/sd_unlearn.json")
MAPPED = "text_encoder_patch.safetensors"


def mapping_error(model, encoder, tokens: torch.Tensor) -> float:
    """Max |open_clip hidden - CLIPTextModel last_hidden_state| over ``tokens``."""
    with torch.no_grad():
        hf = encoder(tokens.to(encoder.device)).last_hidden_state.float().cpu()
    return float((hf - hf_text.open_clip_hidden(model, tokens).float().cpu()).abs().max())


def prompts_and_judge(p: Params, bundle, retained_per_kind: int):
    """The concept's canonical name, its prompts (target first, then retained concepts of the
    identity, character and object kinds) and the tiny-CLIP judge with every kind's names."""
    d, e = p.data, p.sd.evaluate
    sets = evalsets.standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas,
                                  p.eval.templates)
    kind = evalsets.concept_kind(p.concept, sets, p.concept_kind)
    names = {k: s.classnames for k, s in sets.items()}
    templates = {k: getattr(e.templates, k) for k in ("identity", "character", "object")}
    templates.setdefault(kind, getattr(e.templates, kind))
    concept = next(n for n in names[kind] if n.lower() == p.concept.replace("_", " ").lower())
    prompts = J.choose_prompts(names, templates, concept, kind, retained_per_kind)
    judge = J.clip_judge(bundle.model, bundle.tokenizer, bundle.preprocess, names,
                         {k: s.templates for k, s in sets.items()}, e.judge_over)
    return concept, names, prompts, judge


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    m = p.model
    bundle = build(m.name, m.pretrained, m.quick_gelu, m.precision, p.device)
    model = bundle.model
    pipe = sd_mod.load(p.sd.pipeline)
    sd_mod.check_text_encoder(pipe.text_encoder, model, atol=1e-6)  # before any heavy work
    kinds, kind, concept_idx = kinds_and_target(p)
    gdir = Path(p.gradients.out)
    rows = [r for r in json.loads((gdir / "layers.json").read_text())
            if r["candidate"] and L.tower(r["name"]) == "text"
            and hf_text.maps_onto(r["name"], pipe.text_encoder)]  # ranked among what SD has
    layers = L.select(L.annotate(rows, p.rank.alignment == "signed", p.rank.fronts), p.rank.rule)
    grads = load_file(str(gdir / "forget_grads.safetensors"))
    layers = [x for x in layers if x in grads]
    if not layers:
        raise DataError("no text-tower layer has a stored gradient; rerun gradients")
    sets = Path(p.sets.out)
    forget = load_pairs([Shard(sets / "forget_search.tar")], bundle.preprocess, bundle.tokenizer)
    retain_val = load_pairs([Shard(sets / "retain_val.tar")], bundle.preprocess, bundle.tokenizer)
    base_hash = state_dict_hash(model)
    u = p.unlearn
    start = time.time()
    s = p.sd.search
    if s.judge == "generations":
        _, names, prompts, judge = prompts_and_judge(p, bundle, s.retained_per_kind)
        e = p.sd.evaluate
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        scorer = J.GenerationScorer(pipe, model, prompts, names, judge, s.images_per_prompt,
                                    p.seed, e.steps, e.guidance, size, s.target_images)
        target = s.target
    else:
        scorer = TrialScorer(model, bundle.tokenizer, kinds, kind, concept_idx, forget,
                             retain_val, topk=u.topk)
        target = u.target
    scorer.prepare(layers[0])
    base_forget, base_retain, _ = scorer.score()
    searches, chosen = run_slug(model, grads, layers, scorer, target, u.max_evals, u.scale0,
                                progress=progress)
    elapsed = time.time() - start
    if chosen is None:
        raise DataError(f"no text-tower layer reached forget <= {target} ({s.judge} judge) "
                        f"within {u.max_evals} evaluations ({', '.join(layers)})")
    best = chosen.result.best
    new = model.state_dict()[chosen.layer] + best.lam * grads[chosen.layer]
    patch = patch_mod.Patch({chosen.layer: new}, {
        "concept": p.concept, "kind": kind, "layers": [chosen.layer], "lambda": best.lam,
        "rel_step": best.lam / chosen.rho, "tower": "text", "base_model": bundle.describe(),
        "base_model_sha256": base_hash, "search": {"judge": s.judge, "target": target,
                                                   "forget": best.forget, "retain": best.retain},
        "gradients_sha256": sha256_file(gdir / "forget_grads.safetensors"), "seed": p.seed,
    })
    mapped = hf_text.map_patch(patch.tensors, pipe.text_encoder)

    # exactness: open_clip and CLIPTextModel agree before and after the patch
    probe = bundle.tokenizer(forget.captions[:64] + retain_val.captions[:64])
    err_before = mapping_error(model, pipe.text_encoder, probe)
    originals = {k: v.detach().clone() for k, v in pipe.text_encoder.state_dict().items()
                 if k in mapped}
    hf_text.apply_mapped(pipe.text_encoder, mapped)
    with edited(dict(model.named_parameters())[chosen.layer], grads[chosen.layer], best.lam):
        err_after = mapping_error(model, pipe.text_encoder, probe)
    hf_text.apply_mapped(pipe.text_encoder, originals)
    if max(err_before, err_after) > 1e-4:
        raise NumericalError(f"the mapped patch does not reproduce open_clip's text features "
                             f"(max error {max(err_before, err_after):.2e})")

    patch_mod.save(patch, p.sd.patch)
    with atomic_path(Path(p.sd.patch) / MAPPED, ".safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in mapped.items()}, str(tmp))
    write_json(METRICS, {
        "concept": p.concept, "kind": kind, "layer": chosen.layer, "lambda": best.lam,
        "rel_step": best.lam / chosen.rho, "searched_layers": layers,
        "search": {"judge": s.judge, "target": target,
                   "layers": {x.layer: {"reached": x.result.best is not None,
                                        "evaluations": len(x.result.trials)} for x in searches},
                   "forget_before": base_forget, "retain_before": base_retain,
                   "forget_after": best.forget, "retain_after": best.retain},
        "mapped_tensors": sorted(mapped), "mapping_max_abs_error": {"before": err_before,
                                                                    "after": err_after},
        "time_s": round(elapsed, 2),
    })
    print(f"sd_unlearn: {chosen.layer} at {best.lam / chosen.rho:.3f} x ||theta|| -> "
          f"{', '.join(sorted(mapped))}; search forget {base_forget:.3f} -> {best.forget:.3f}; "
          f"mapping error {max(err_before, err_after):.1e}")


if __name__ == "__main__":
    run(main)
