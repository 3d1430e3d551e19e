"""Generations of the forgotten and of retained concepts, before and after a text-encoder patch,
on the evaluation seeds, judged by CLIP."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from . import judge as J
from . import sd as sd_mod
from . import text_encoder as hf_text


@dataclass
class Generations:
    before: torch.Tensor
    after: torch.Tensor
    accuracy_before: dict[str, float]  # per concept: share of its images judged as it
    accuracy_after: dict[str, float]
    seconds: float


def before_after(pipe, mapped: dict[str, torch.Tensor], prompts: list[J.Prompt], names: dict,
                 judge, per_prompt: int, seed: int, steps: int, guidance: float) -> Generations:
    """The same seeds before and after; the encoder is restored afterwards."""
    start, size = time.time(), sd_mod.image_size(pipe)
    texts = [pr.text for pr in prompts]
    before = sd_mod.generate(pipe, texts, per_prompt, seed, steps, guidance, size)
    originals = {k: v.detach().clone() for k, v in pipe.text_encoder.state_dict().items()
                 if k in mapped}
    hf_text.apply_mapped(pipe.text_encoder, mapped)
    try:
        after = sd_mod.generate(pipe, texts, per_prompt, seed, steps, guidance, size)
    finally:
        hf_text.apply_mapped(pipe.text_encoder, originals)
    seconds = time.time() - start
    return Generations(before, after,
                       J.generation_accuracy(before, prompts, per_prompt, names, judge),
                       J.generation_accuracy(after, prompts, per_prompt, names, judge), seconds)


def table(g: Generations, prompts: list[J.Prompt]) -> list[dict]:
    return [{"concept": pr.concept, "kind": pr.kind, "prompt": pr.text, "target": pr.target,
             "before": g.accuracy_before[pr.concept], "after": g.accuracy_after[pr.concept]}
            for pr in prompts]


def grid_rows(prompts: list[J.Prompt], per_kind: int = 2) -> list[int]:
    """The prompts the figure shows: the targets', then ``per_kind`` retained ones of each kind."""
    show, seen = [i for i, pr in enumerate(prompts) if pr.target], {}
    for i, pr in enumerate(prompts):
        if not pr.target and seen.setdefault(pr.kind, 0) < per_kind:
            seen[pr.kind] += 1
            show.append(i)
    return show


def metrics(g: Generations, prompts: list[J.Prompt]) -> dict:
    sb, sa = J.summarize(g.accuracy_before, prompts), J.summarize(g.accuracy_after, prompts)
    return {"before": {k: v for k, v in sb.items() if k != "per_concept"},
            "after": {k: v for k, v in sa.items() if k != "per_concept"},
            "retained_drop": sb["retained"] - sa["retained"], "generation_s": round(g.seconds, 1)}
