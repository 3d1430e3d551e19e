"""Several concepts forgotten from a text-to-image pipeline's text encoder at once: the
strategies of ``pipeline.unlearn.multi`` over the text layers the encoder reads, judged on
generations (each target on its own search seeds) or, as the reference, by CLIP zero-shot; then
the stack flattened, mapped onto the encoder, checked, and every target's and the retained
concepts' generations judged on the evaluation seeds."""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import NumericalError
from ..params import GradientsParams, RankParams, SDEvaluateParams, SDSearchParams, UnlearnParams
from ..unlearn import multi as M
from ..unlearn import patch as patch_mod
from ..unlearn import stack as S
from . import evaluate as G
from . import judge as J
from . import sd as sd_mod
from . import text_encoder as hf_text
from .scorer import SEARCH_SEED_OFFSET, GenerationScorer, PromptSet, layers_in_pipeline
from .unlearn import mapping_error, prompts_and_judge, readable


class ManyGenerations(GenerationScorer):
    """Several targets judged on generations. Each target keeps its own search seeds whatever
    subset is judged; its share is ``forget:<label>`` in the parts and the forget score is the
    largest share. Every text layer that differs from ``base`` is mapped onto the encoder (the
    strategies apply the other concepts' edits to open_clip), not only the searched one."""

    def __init__(self, pipe, clip_model, targets: dict[str, PromptSet], retained: PromptSet,
                 judge, steps: int, guidance: float, size: int, base: dict[str, torch.Tensor]):
        super().__init__(pipe, clip_model, None, retained, judge, steps, guidance, size)
        self.targets, self.base = targets, base

    def _edited(self) -> list[str]:
        params = dict(self.clip.named_parameters())
        out = {x for x, v in self.base.items() if not torch.equal(params[x], v)}
        return sorted(out | ({self.layer} if self.layer else set()))

    def score(self) -> tuple[float, float, dict]:
        with layers_in_pipeline(self.pipe, self.clip, self._edited()):
            shares = {}
            for label, s in self.targets.items():
                hits = self.hits(s)
                shares[label] = sum(hits) / len(hits)
            return (max(shares.values()), self._share(self.retained),
                    {f"forget:{k}": v for k, v in shares.items()})


def generation_scorers(pipe, clip_model, prompts: Sequence[J.Prompt], judge, target_images: int,
                       per_prompt: int, seed: int, steps: int, guidance: float) -> M.Scorers:
    """A ``Scorers`` for ``multi.forget``: target ``i`` of ``prompts`` generated
    ``target_images`` times on seeds ``seed + SEARCH_SEED_OFFSET + 1000 i + j``; the retained
    prompts ``per_prompt`` times each, after every target's seeds."""
    seed += SEARCH_SEED_OFFSET
    tops = [pr for pr in prompts if pr.target]
    targets = {pr.concept: PromptSet([pr], target_images, seed + 1000 * i)
               for i, pr in enumerate(tops)}
    retained = PromptSet([pr for pr in prompts if not pr.target], per_prompt,
                         seed + 1000 * len(tops))
    keep = readable(pipe.text_encoder)
    base = {x: v.detach().clone() for x, v in clip_model.named_parameters() if keep(x)}
    size = sd_mod.image_size(pipe)
    return lambda rs: ManyGenerations(pipe, clip_model,
                                      {r.concept.label: targets[r.concept.label] for r in rs},
                                      retained, J.prompt_hits(judge), steps, guidance, size, base)


def forget(pipe, bundle, sets: dict, kinds, reqs, retain, retain_val, strategy: str, rounds: int,
           s: SDSearchParams, e: SDEvaluateParams, u: UnlearnParams, rank: RankParams,
           g: GradientsParams, seed: int, progress=lambda x, **k: x) -> M.Result:
    """``multi.forget`` on the text layers ``pipe``'s encoder reads, judged as ``s.judge``
    (``sd.search``) says: ``generations`` (``sd.evaluate``'s templates and sampler, ``s.target``)
    or ``clip`` (``unlearn.target``). ``u``, ``rank``, ``g``: the ``unlearn``, ``rank`` and
    ``gradients`` params groups."""
    if s.judge == "clip":
        scorers, target = M.clip_scorers(bundle.model, bundle.tokenizer, kinds, retain_val, u), None
    else:
        _, prompts, clip = prompts_and_judge(sets, [r.concept for r in reqs], e.templates,
                                             e.judge_over, s.retained_per_kind, bundle)
        scorers = generation_scorers(pipe, bundle.model, prompts, clip, s.target_images,
                                     s.images_per_prompt, seed, e.steps, e.guidance)
        target = s.target
    return M.forget(strategy, bundle.model, reqs, retain, scorers, u, rank, g, rounds, progress,
                    readable=readable(pipe.text_encoder), target=target)


def mapped_stack(pipe, model, stack: S.Stack, tokens: torch.Tensor, atol: float = 1e-4
                 ) -> tuple[dict[str, torch.Tensor], tuple[float, float]]:
    """The stack as tensors of the encoder, checked: open_clip with the stack applied and the
    encoder with the mapped tensors give the same hidden states (before and after)."""
    mapped = hf_text.map_patch(S.flatten(model, stack).tensors, pipe.text_encoder)
    before = mapping_error(model, pipe.text_encoder, tokens)
    originals = S.apply(model, stack)
    enc = pipe.text_encoder.state_dict()
    kept = {k: enc[k].detach().clone() for k in mapped}
    hf_text.apply_mapped(pipe.text_encoder, mapped)
    try:
        after = mapping_error(model, pipe.text_encoder, tokens)
    finally:
        hf_text.apply_mapped(pipe.text_encoder, kept)
        patch_mod.revert(model, originals)
    if max(before, after) > atol:
        raise NumericalError(f"the mapped stack does not reproduce open_clip's text features "
                             f"(max error {max(before, after):.2e})")
    return mapped, (before, after)


def evaluate(pipe, bundle, sets: dict, stack: S.Stack, reqs, e: SDEvaluateParams, seed: int,
             images: int) -> tuple[G.Generations, list[J.Prompt], dict]:
    """The stack mapped and checked (``mapped_stack``), then every target's and the retained
    concepts' generations (``sd.evaluate``'s prompts, ``images`` each) before and after."""
    mapped, errors = mapped_stack(pipe, bundle.model, stack,
                                  torch.cat([r.forget.tokens[:64] for r in reqs]))
    names, prompts, judge = prompts_and_judge(sets, [r.concept for r in reqs], e.templates,
                                              e.judge_over, e.retained_per_kind, bundle)
    g = G.before_after(pipe, mapped, prompts, names, judge, images, seed, e.steps, e.guidance)
    return g, prompts, {"images_per_prompt": images, "generations": metrics(g, prompts),
                        "mapping_max_abs_error": {"before": errors[0], "after": errors[1]}}


def metrics(g: G.Generations, prompts: Sequence[J.Prompt]) -> dict:
    """Per target its share of generations judged as it, before and after; the retained
    concepts' mean (and by kind) and its drop."""
    out = G.metrics(g, prompts)
    out["forgotten"] = {pr.concept: {"kind": pr.kind, "before": g.accuracy_before[pr.concept],
                                     "after": g.accuracy_after[pr.concept]}
                        for pr in prompts if pr.target}
    return out
