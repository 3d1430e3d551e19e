"""A SLUG trial scorer that judges *generations* (the Stable Diffusion and UnlearnCanvas paths).

For each trial the edited open_clip text layer is mapped onto the pipeline's text encoder, the
target's prompts and some retained prompts are generated with *search* seeds (never the
evaluation seeds) and judged: forget = the share of the target's images judged as the target,
retain = the share of the retained images judged as their own concept.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from . import sd as sd_mod
from . import text_encoder as hf_text

SEARCH_SEED_OFFSET = 10_000_000  # search generations never share a seed with evaluation ones


@contextlib.contextmanager
def layers_in_pipeline(pipe, clip_model, layers):
    """Map the open_clip text layers' *current* values onto the pipeline's text encoder for the
    duration of a trial; restore the encoder's original tensors afterwards."""
    params = dict(clip_model.named_parameters())
    mapped = hf_text.map_patch({x: params[x].detach() for x in layers}, pipe.text_encoder)
    enc = pipe.text_encoder.state_dict()
    originals = {k: enc[k].detach().clone() for k in mapped}
    hf_text.apply_mapped(pipe.text_encoder, mapped)
    try:
        yield
    finally:
        hf_text.apply_mapped(pipe.text_encoder, originals)


@dataclass
class PromptSet:
    """Prompts generated ``per_prompt`` times each (image j of prompt i: seed + 1000 i + j)."""
    prompts: Sequence  # whatever the judge needs to know of a prompt; ``text`` is generated
    per_prompt: int
    seed: int


# judge(images01, prompts of these images, per_prompt) -> one hit (bool) per image
Judge = Callable[[torch.Tensor, Sequence, int], list[bool]]


class GenerationScorer:
    def __init__(self, pipe, clip_model, target: PromptSet, retained: PromptSet, judge: Judge,
                 steps: int, guidance: float, size: int):
        self.pipe, self.clip, self.judge = pipe, clip_model, judge
        self.target, self.retained = target, retained
        self.steps, self.guidance, self.size = steps, guidance, size
        self.layer: str | None = None

    def prepare(self, layer: str, direction=None) -> None:  # generation: nothing to cache
        self.layer = layer

    def hits(self, s: PromptSet) -> list[bool]:
        """One hit per image of ``s``, prompt after prompt (``per_prompt`` images each)."""
        hits = []
        texts = [p.text for p in s.prompts]
        for start, images in sd_mod.generate_chunks(self.pipe, texts, s.per_prompt, s.seed,
                                                    self.steps, self.guidance, self.size):
            chunk = s.prompts[start:start + len(images) // s.per_prompt]
            hits += self.judge(images, chunk, s.per_prompt)
        return hits

    def _share(self, s: PromptSet) -> float:
        hits = self.hits(s)
        return sum(hits) / len(hits)

    def score(self) -> tuple[float, float, dict]:
        with layers_in_pipeline(self.pipe, self.clip, [self.layer]):
            return self._share(self.target), self._share(self.retained), {}
