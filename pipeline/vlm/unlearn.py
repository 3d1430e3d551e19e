"""SLUG for a vision-language model: the open_clip vision layers the VLM reads are ranked and
searched through the one SLUG entry point (``pipeline.unlearn.slug``), each trial judged on the
VLM's own answers; the searched tensor is mapped onto the VLM's vision tower by name
(``vision_tower.map_patch``) before every score, so what is judged is exactly what ships.

Scores, on search images only: ``forget`` is the share of the target's images whose answer names
the target; ``retain`` the share of the retained concepts' images whose answer names their own
concept (``llava.names_it``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..diffusion.text_encoder import apply_mapped
from ..models.structure import tower
from . import llava
from . import vision_tower as vt


def readable(num_layers: int, feature_layer: int) -> Callable[[str], bool]:
    """The open_clip layers a VLM reading ``hidden_states[feature_layer]`` reads (for
    ``slug.rank``: the Pareto front is taken within them)."""
    return lambda name: tower(name) == "vision" and vt.is_read(name, num_layers, feature_layer)


@dataclass
class Questions:
    """Images, the question asked of each, and the names that count as naming its concept."""
    pixels: torch.Tensor
    questions: list[str]
    names: list[tuple[str, ...]]

    def __post_init__(self):
        if not (len(self.pixels) == len(self.questions) == len(self.names)) or not self.names:
            raise ValueError("pixels, questions and names must be as many, and not none")


def named_share(model, processor, q: Questions, template: str, batch_size: int = 64) -> float:
    """The share of ``q``'s images whose answer names their concept."""
    said = llava.answers(model, processor, q.pixels, q.questions, template, batch_size)
    return sum(llava.names_it(a, n) for a, n in zip(said, q.names)) / len(said)


class AnswerScorer:
    """A ``slug.Scorer`` on the VLM's answers. The search edits the open_clip model's parameter in
    place; ``score`` maps its current value onto the VLM's tower, asks, and puts the tower's
    tensor back, so the VLM is left as it was between trials."""

    def __init__(self, clip_model, vlm, processor, template: str, forget: Questions,
                 retained: Questions, batch_size: int = 64):
        self.tower = vlm.model.vision_tower
        vt.check_vision_tower(self.tower, clip_model, atol=1e-6)
        self.clip, self.vlm, self.processor, self.template = clip_model, vlm, processor, template
        self.forget, self.retained, self.batch_size = forget, retained, batch_size
        self.num_layers = self.tower.config.num_hidden_layers
        self.feature_layer = vlm.config.vision_feature_layer
        self.layer: str | None = None

    def prepare(self, layer: str, direction: torch.Tensor | None = None) -> None:
        vt.check_read([layer], self.num_layers, self.feature_layer)
        self.layer = layer

    @torch.no_grad()
    def score(self) -> tuple[float, float, dict]:
        if self.layer is None:
            raise RuntimeError("prepare(layer) before score()")
        value = dict(self.clip.named_parameters())[self.layer].detach()
        mapped = vt.map_patch({self.layer: value}, self.tower)
        have = self.tower.state_dict()
        saved = {k: have[k].detach().clone() for k in mapped}
        apply_mapped(self.tower, mapped)
        try:
            forget = named_share(self.vlm, self.processor, self.forget, self.template,
                                 self.batch_size)
            retain = named_share(self.vlm, self.processor, self.retained, self.template,
                                 self.batch_size)
        finally:
            apply_mapped(self.tower, saved)
        return forget, retain, {}
