"""SLUG for a text-to-image pipeline: the text tower's layers that the pipeline's ``CLIPTextModel``
has are ranked and searched through the one SLUG entry point, judged on generations (or, as the
reference, by CLIP zero-shot); the patch is mapped onto the encoder and checked to give the same
hidden states as open_clip before and after the edit."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..errors import DataError, ModelError, NumericalError
from ..models.structure import tower
from ..params import RankParams, SDEvaluateParams, SDSearchParams, UnlearnParams
from ..unlearn import patch as patch_mod
from ..unlearn.slug import edited
from . import judge as J
from . import text_encoder as hf_text
from .scorer import SEARCH_SEED_OFFSET, GenerationScorer, PromptSet

MAPPED = "text_encoder_patch.safetensors"


def readable(encoder) -> Callable[[str], bool]:
    """The open_clip layers the pipeline's text encoder reads (a plain ``CLIPTextModel`` has no
    ``text_projection``; SD 2.x's encoder lacks the last block)."""
    return lambda name: tower(name) == "text" and hf_text.maps_onto(name, encoder)


def layers(rows: list[dict], grads: dict, r: RankParams, encoder) -> list[str]:
    """The layers to search: ranked (``rank.*``) among the text layers ``encoder`` reads, kept
    where the gradient pass stored a gradient."""
    from ..unlearn import slug

    ranked, _ = slug.rank(rows, slug.RankConfig(r.alignment == "signed", r.fronts, r.rule),
                          readable(encoder))
    if not (kept := [x for x in ranked if x in grads]):
        raise DataError("no text-tower layer has a stored gradient; run the gradient pass again")
    return kept


def prompts_and_judge(sets: dict, concepts, templates, judge_over: str, retained_per_kind: int,
                      bundle):
    """Every kind's class names, the prompts (the targets' first, then ``retained_per_kind`` other
    concepts of the identity, character and object kinds) and the CLIP judge of generations."""
    names = {k: s.classnames for k, s in sets.items()}
    tpl = {k: getattr(templates, k) for k in ("identity", "character", "object")}
    for c in concepts:
        tpl.setdefault(c.kind, getattr(templates, c.kind))
    prompts = J.prompts_for(names, tpl, [(c.label, c.kind) for c in concepts], retained_per_kind)
    judge = J.clip_judge(bundle.model, bundle.tokenizer, bundle.preprocess, names,
                         {k: s.templates for k, s in sets.items()}, judge_over)
    return names, prompts, judge


def generation_scorer(pipe, clip_model, prompts, judge, per_prompt: int, target_images: int,
                      seed: int, steps: int, guidance: float, size: int) -> GenerationScorer:
    """The target's prompt ``target_images`` times (the criterion needs the most samples), the
    retained prompts ``per_prompt`` times each, all on search seeds."""
    seed += SEARCH_SEED_OFFSET
    return GenerationScorer(pipe, clip_model, PromptSet(prompts[:1], target_images, seed),
                            PromptSet(prompts[1:], per_prompt, seed + 1000), J.prompt_hits(judge),
                            steps, guidance, size)


def mapping_error(model, encoder, tokens: torch.Tensor) -> float:
    """Max |open_clip hidden - CLIPTextModel last_hidden_state| over ``tokens``."""
    with torch.no_grad():
        hf = encoder(tokens.to(encoder.device)).last_hidden_state.float().cpu()
    return float((hf - hf_text.open_clip_hidden(model, tokens).float().cpu()).abs().max())


def check_mapping(model, encoder, result, mapped: dict[str, torch.Tensor], tokens: torch.Tensor,
                  atol: float = 1e-4) -> tuple[float, float]:
    """The largest hidden-state difference between open_clip and the encoder, before and after
    the edit (open_clip edited by the search's step, the encoder by the mapped patch)."""
    err_before = mapping_error(model, encoder, tokens)
    originals = {k: v.detach().clone() for k, v in encoder.state_dict().items() if k in mapped}
    hf_text.apply_mapped(encoder, mapped)
    try:
        with edited(dict(model.named_parameters())[result.layer], result.grads[result.layer],
                    result.lam):
            err_after = mapping_error(model, encoder, tokens)
    finally:
        hf_text.apply_mapped(encoder, originals)
    if max(err_before, err_after) > atol:
        raise NumericalError(f"the mapped patch does not reproduce open_clip's text features "
                             f"(max error {max(err_before, err_after):.2e})")
    return err_before, err_after


def save(patch: patch_mod.Patch, mapped: dict[str, torch.Tensor], folder: str | Path) -> None:
    """The patch (open_clip names) and its mapping onto the encoder, as one folder (hashed)."""
    patch_mod.save(patch, folder, {MAPPED: mapped})


def load_mapped(folder: str | Path) -> dict[str, torch.Tensor]:
    """The patch mapped onto the encoder, checked against the patch's hashes."""
    if not (Path(folder) / MAPPED).exists():
        raise ModelError(f"{Path(folder) / MAPPED} is missing; unlearn the pipeline's text "
                         f"encoder first (params: sd.patch)")
    return patch_mod.read_tensors(folder, MAPPED)


def search(pipe, bundle, sets: dict, concept, layers: list[str], grads: dict, forget,
           retain_val, s: SDSearchParams, u: UnlearnParams, e: SDEvaluateParams, seed: int,
           progress=lambda x, **k: x, retain=None):
    """The step search through the one SLUG entry point, judged by ``s.judge``: ``generations``
    (the target's and retained prompts generated on search seeds, judged by CLIP; then
    ``s.target``) or ``clip`` (the reference: CLIP zero-shot on the forget-search split; then
    ``u.target``). Under ``u.selectivity`` the steps are projected on ``retain``'s inputs."""
    from ..unlearn import slug
    from ..unlearn.trials import TrialScorer

    if s.judge == "clip":
        kinds = {k: (x.classnames, x.templates) for k, x in sets.items()}
        scorer, target = TrialScorer(bundle.model, bundle.tokenizer, kinds, concept, forget,
                                     retain_val, u.topk, shortcut=u.shortcut), u.target
    else:
        from . import sd as sd_mod

        _, prompts, clip = prompts_and_judge(sets, [concept], e.templates, e.judge_over,
                                             s.retained_per_kind, bundle)
        scorer = generation_scorer(pipe, bundle.model, prompts, clip, s.images_per_prompt,
                                   s.target_images, seed, e.steps, e.guidance,
                                   sd_mod.image_size(pipe))
        target = s.target
    grads, layers, proj = slug.selective(bundle.model, grads, layers, retain,
                                         slug.Selectivity(u.selectivity, u.energy))
    res = slug.search(bundle.model, grads, layers, scorer,
                      slug.SearchConfig(target, u.max_evals, u.scale0, u.rtol,
                                        u.prune), progress=progress,
                      score_base=True)
    res.projection = proj
    if not res.reached:
        raise DataError(f"no text-tower layer reached forget <= {target} ({s.judge} judge) "
                        f"within {u.max_evals} evaluations ({', '.join(layers)})")
    return res, target


def metrics(res, concept, layers: list[str], judge: str, target: float,
            mapped: dict[str, torch.Tensor], errors: tuple[float, float]) -> dict:
    return {
        "concept": concept.label, "kind": concept.kind, "layer": res.layer, "lambda": res.lam,
        "rel_step": res.rel_step, "searched_layers": layers,
        "search": {"judge": judge, "target": target,
                   "layers": {x.layer: {"reached": x.result.best is not None,
                                        "evaluations": len(x.result.trials)}
                              for x in res.searches},
                   "forget_before": res.before[0], "retain_before": res.before[1],
                   "forget_after": res.trial.forget, "retain_after": res.trial.retain},
        "mapped_tensors": sorted(mapped),
        "mapping_max_abs_error": {"before": errors[0], "after": errors[1]},
        "time_s": round(res.time_s, 2), "selectivity": res.selectivity,
    }
