"""Judging generations: which concept does each generated image show?

A concept's *generation accuracy* is the share of the images generated from its prompt that a
classifier assigns to it, among every name of its kind (the tiny CLIP zero-shot by default: the
same classifier and templates as the CLIP evaluation; a real run may pass any classifier with
the same interface).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from ..evaluate.zeroshot import encode_images, text_classifier
from ..names import same


@dataclass
class Prompt:
    concept: str
    kind: str
    text: str
    target: bool  # the forgotten concept


def choose_prompts(classnames: dict[str, Sequence[str]], templates: dict[str, str],
                   concept: str, concept_kind: str, retained_per_kind: int) -> list[Prompt]:
    """The target's prompt, then the first ``retained_per_kind`` other names of every kind that
    has a template (identities, characters, objects...)."""
    return prompts_for(classnames, templates, [(concept, concept_kind)], retained_per_kind)


def prompts_for(classnames: dict[str, Sequence[str]], templates: dict[str, str],
                targets: Sequence[tuple[str, str]], retained_per_kind: int) -> list[Prompt]:
    """Each target's prompt (``(name, kind)``, in order), then the first ``retained_per_kind``
    names of every kind that has a template and is none of the targets."""
    out = [Prompt(c, k, templates[k].format(c), True) for c, k in targets]
    for kind, names in classnames.items():
        if kind not in templates:
            continue
        others = [n for n in names if not any(same(n, c) for c, _ in targets)]
        out += [Prompt(n, kind, templates[kind].format(n), False)
                for n in others[:retained_per_kind]]
    return out


def to_pil(images01: torch.Tensor) -> list[Image.Image]:
    arr = (images01.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a) for a in arr]


@torch.no_grad()
def clip_judge(model, tokenizer, preprocess: Callable, classnames: dict[str, Sequence[str]],
               templates: dict[str, Sequence[str]], over: str = "all"):
    """A judge ``(images01, kind) -> predicted names`` from CLIP zero-shot.

    ``over="all"``: among every name of every kind, so an image that shows no character at all is
    not forced onto the nearest character (measured on Iron Man: after the edit the generator drew
    rings and faces, which a characters-only judge still called Iron Man in 6-100 % of images).
    ``over="kind"``: among the names of the prompt's kind only (a closed-set judge).
    """
    clfs = {k: text_classifier(model, tokenizer, names, templates[k])
            for k, names in classnames.items()}
    every = [n for k in classnames for n in classnames[k]]
    clf_all = torch.cat([clfs[k] for k in classnames])

    def judge(images01: torch.Tensor, kind: str) -> list[str]:
        x = torch.stack([preprocess(im) for im in to_pil(images01)])
        feats = encode_images(model, x)
        if over == "all":
            return [every[i] for i in (feats @ clf_all.T).argmax(1).tolist()]
        return [classnames[kind][i] for i in (feats @ clfs[kind].T).argmax(1).tolist()]

    return judge


def generation_accuracy(images01: torch.Tensor, prompts: Sequence[Prompt], per_prompt: int,
                        classnames: dict[str, Sequence[str]], judge) -> dict[str, float]:
    """Per concept: the share of its ``per_prompt`` images judged to be it."""
    out = {}
    for i, pr in enumerate(prompts):
        pred = judge(images01[i * per_prompt:(i + 1) * per_prompt], pr.kind)
        out[pr.concept] = sum(same(n, pr.concept) for n in pred) / len(pred)
    return out


def summarize(acc: dict[str, float], prompts: Sequence[Prompt]) -> dict:
    retained = [p for p in prompts if not p.target]
    by_kind: dict[str, list[float]] = {}
    for p in retained:
        by_kind.setdefault(p.kind, []).append(acc[p.concept])
    return {"forget": max(acc[p.concept] for p in prompts if p.target),  # the worst target
            "retained": sum(acc[p.concept] for p in retained) / max(1, len(retained)),
            "retained_by_kind": {k: sum(v) / len(v) for k, v in by_kind.items()},
            "per_concept": acc}


def prompt_hits(judge):
    """A ``scorer.Judge`` from a CLIP judge: an image is a hit when it is judged as its prompt's
    concept (each prompt's images are judged together, as ``generation_accuracy`` does)."""
    def hits(images01: torch.Tensor, prompts: Sequence[Prompt], per_prompt: int) -> list[bool]:
        out = []
        for i, pr in enumerate(prompts):
            pred = judge(images01[i * per_prompt:(i + 1) * per_prompt], pr.kind)
            out += [same(n, pr.concept) for n in pred]
        return out
    return hits
