"""SLUG for one UnlearnCanvas target (a style or an object), on the generator's text encoder.

1. One gradient pass over the text tower only (the generator has no vision tower; the image
   features come from the frozen CLIP vision tower): forget = the target's canvas images, captioned
   with the concept name (the reference) or their prompts; retain = other concepts' canvas images
   with their prompts, interleaved so that a batch rarely repeats a prompt (the contrastive loss
   needs distinct texts; the reference's HF path replaced them all by the name, B4).
2. Rank the text layers the pipeline's encoder has; pick by ``rule``.
3. Search the step on generations from *search* seeds, judged by the target kind's classifier:
   forget = share of the target's images still judged as it, retain = accuracy on other concepts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..datasets.pairs import PairData, load_pairs
from ..datasets.shards import Shard
from ..diffusion import text_encoder as hf_text
from ..diffusion.judge import SEARCH_SEED_OFFSET, layer_in_pipeline
from ..errors import DataError
from ..unlearn import layers as L
from ..unlearn.gradients import gradient_pass
from ..unlearn.slug import run_slug
from .classifiers import Judge
from .data import Canvas, Target, label, tar_name
from .protocol import judged


@contextlib.contextmanager
def text_tower_only(model):
    """Freeze the vision tower for a gradient pass (no gradient memory for it)."""
    saved = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        if L.tower(n) == "vision":
            p.requires_grad_(False)
    try:
        yield
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(saved[n])


def interleave(captions: list[str], n: int) -> list[int]:
    """Up to ``n`` indices taking one image per distinct caption in turn (first images first)."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(captions):
        groups.setdefault(c, []).append(i)
    order, depth = [], 0
    while len(order) < n and any(depth < len(g) for g in groups.values()):
        order += [g[depth] for g in groups.values() if depth < len(g)]
        depth += 1
    return order[:n]


def _subset(d: PairData, idx: list[int]) -> PairData:
    return PairData(d.images[idx], d.tokens[idx], [d.captions[i] for i in idx], d.report,
                    [d.keys[i] for i in idx] if d.keys else [])


def forget_retain(canvas: Canvas, target: Target, tars: str | Path, preprocess: Callable,
                  tokenizer: Callable, captions: str, n_retain: int) -> tuple[PairData, PairData]:
    tars = Path(tars)
    path = tars / tar_name(target.kind, target.name)
    if not path.exists():
        raise DataError(f"forget tar {path} not found; run the canvas_sets stage")
    forget = load_pairs([Shard(path)], preprocess, tokenizer)
    if captions == "name":
        forget.tokens = tokenizer([label(target.name)] * len(forget.captions))
    others = [n for n in canvas.names(target.kind) if n != target.name]
    if not others:
        raise DataError(f"no other {target.kind} to retain: the canvas lists only {target.name}")
    retain = load_pairs([Shard(tars / tar_name(target.kind, n)) for n in others], preprocess,
                        tokenizer)
    retain = _subset(retain, interleave(retain.captions, n_retain))
    return forget, retain


class CanvasScorer:
    """A trial scorer on generations: the target's prompts (every cell of its row or column,
    ``per_prompt`` images each) and ``retained`` other cells of the same kind (one image each)."""

    def __init__(self, pipe, clip_model, canvas: Canvas, template: str, target: Target,
                 judge: Judge, per_prompt: int, retained: int, seed: int, steps: int,
                 guidance: float, size: int):
        self.pipe, self.clip, self.judge = pipe, clip_model, judge
        self.per_prompt, self.steps, self.guidance, self.size = per_prompt, steps, guidance, size
        self.seed = seed + SEARCH_SEED_OFFSET
        n_other = len(canvas.objects if target.kind == "style" else canvas.styles)

        def cell(concept: int, other: int) -> tuple[int, int]:
            return (concept, other) if target.kind == "style" else (other, concept)

        self.target_prompts = [canvas.prompt(template, *cell(target.index, x))
                               for x in range(n_other)]
        others = [i for i in range(len(canvas.names(target.kind))) if i != target.index]
        rng = np.random.default_rng(seed)
        picks = [(c, int(x)) for x in range(n_other) for c in others]  # every other cell
        picks = [picks[i] for i in rng.permutation(len(picks))]
        picks = sorted(picks[:retained], key=lambda t: (t[0], t[1]))
        self.retained_prompts = [canvas.prompt(template, *cell(c, x)) for c, x in picks]
        self.retained_truth = torch.tensor([c for c, _ in picks])
        self.target_index = target.index
        self.layer: str | None = None

    def prepare(self, layer: str) -> None:
        self.layer = layer

    def score(self) -> tuple[float, float, dict]:
        with layer_in_pipeline(self.pipe, self.clip, self.layer):
            (pt,) = judged(self.pipe, self.target_prompts, self.per_prompt, self.seed,
                           self.steps, self.guidance, self.size, [self.judge])
            (pr,) = judged(self.pipe, self.retained_prompts, 1, self.seed + 500_000,
                           self.steps, self.guidance, self.size, [self.judge])
        forget = float((pt == self.target_index).float().mean())
        retain = float((pr == self.retained_truth).float().mean())
        return forget, retain, {}


def candidate_layers(model, grads, pipe, exclude, signed: bool, fronts: int, rule: str
                     ) -> tuple[list[str], list[dict]]:
    """Text-tower candidates the pipeline's encoder has, ranked; the layers ``rule`` selects."""
    rows = [r for r in L.stats_table(model, grads.forget, grads.retain, exclude)
            if r["candidate"] and L.tower(r["name"]) == "text"
            and hf_text.maps_onto(r["name"], pipe.text_encoder)]
    if not rows:
        raise DataError("no text-tower candidate layer maps onto the pipeline's text encoder")
    rows = L.annotate(rows, signed, fronts)
    return L.select(rows, rule), rows


def unlearn(model, pipe, forget: PairData, retain: PairData, scorer, *, batch_size: int, exclude, signed: bool, fronts: int, rule: str,
            target_score: float, max_evals: int, scale0: float, progress=lambda x, **k: x):
    """Gradients, ranking and step search; returns (searches, chosen, gradients, ranked table)."""
    with text_tower_only(model):
        g = gradient_pass(model, forget, retain, batch_size)
    layers, table = candidate_layers(model, g, pipe, exclude, signed, fronts, rule)
    searches, chosen = run_slug(model, g.forget, layers, scorer, target_score, max_evals, scale0,
                                progress)
    return searches, chosen, g, table
