"""Judging generations: which concept does each generated image show?

A concept's *generation accuracy* is the share of the images generated from its prompt that a
classifier assigns to it, among every name of its kind (the tiny CLIP zero-shot by default: the
same classifier and templates as the CLIP evaluation; a real run may pass any classifier with
the same interface).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from ..evaluate.zeroshot import encode_images, text_classifier
from . import sd as sd_mod
from . import text_encoder as hf_text


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
    out = [Prompt(concept, concept_kind, templates[concept_kind].format(concept), True)]
    for kind, names in classnames.items():
        if kind not in templates:
            continue
        others = [n for n in names if n.lower() != concept.lower()][:retained_per_kind]
        out += [Prompt(n, kind, templates[kind].format(n), False) for n in others]
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
        out[pr.concept] = sum(n.lower() == pr.concept.lower() for n in pred) / len(pred)
    return out


def summarize(acc: dict[str, float], prompts: Sequence[Prompt]) -> dict:
    retained = [p for p in prompts if not p.target]
    by_kind: dict[str, list[float]] = {}
    for p in retained:
        by_kind.setdefault(p.kind, []).append(acc[p.concept])
    target = next(p for p in prompts if p.target)
    return {"forget": acc[target.concept],
            "retained": sum(acc[p.concept] for p in retained) / max(1, len(retained)),
            "retained_by_kind": {k: sum(v) / len(v) for k, v in by_kind.items()},
            "per_concept": acc}


@contextlib.contextmanager
def layer_in_pipeline(pipe, clip_model, layer: str):
    """Map the open_clip text layer's *current* value onto the pipeline's text encoder for the
    duration of a trial; restore the encoder's original tensors afterwards."""
    current = {layer: dict(clip_model.named_parameters())[layer].detach()}
    mapped = hf_text.map_patch(current, pipe.text_encoder)
    enc = pipe.text_encoder.state_dict()
    originals = {k: enc[k].detach().clone() for k in mapped}
    hf_text.apply_mapped(pipe.text_encoder, mapped)
    try:
        yield
    finally:
        hf_text.apply_mapped(pipe.text_encoder, originals)


SEARCH_SEED_OFFSET = 10_000_000  # search generations never share a seed with evaluation ones


class GenerationScorer:
    """A SLUG trial scorer that judges *generations*: the edited open_clip text layer is mapped onto
    the pipeline's text encoder, the prompts are generated with the search seeds and judged.
    forget = the target's generation accuracy; retain = the mean over retained prompts."""

    def __init__(self, pipe, clip_model, prompts, classnames, judge, per_prompt: int, seed: int,
                 steps: int, guidance: float, size: int, target_images: int | None = None):
        self.pipe, self.clip, self.prompts, self.names = pipe, clip_model, prompts, classnames
        self.judge, self.per_prompt, self.seed = judge, per_prompt, seed + SEARCH_SEED_OFFSET
        self.steps, self.guidance, self.size = steps, guidance, size
        self.target_images = target_images or per_prompt  # more samples where the criterion is
        self.layer: str | None = None

    def prepare(self, layer: str) -> None:
        self.layer = layer

    def score(self) -> tuple[float, float, dict]:
        target, rest = self.prompts[0], self.prompts[1:]
        with layer_in_pipeline(self.pipe, self.clip, self.layer):
            t_img = sd_mod.generate(self.pipe, [target.text], self.target_images, self.seed,
                                      self.steps, self.guidance, self.size)
            r_img = sd_mod.generate(self.pipe, [p.text for p in rest], self.per_prompt,
                                      self.seed + 1000, self.steps, self.guidance, self.size)
        acc = generation_accuracy(t_img, [target], self.target_images, self.names, self.judge)
        acc.update(generation_accuracy(r_img, rest, self.per_prompt, self.names, self.judge))
        s = summarize(acc, self.prompts)
        return s["forget"], s["retained"], {}
