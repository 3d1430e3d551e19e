"""Features of fixed images and texts while one weight tensor changes, recomputing only what the
change can affect.

A SLUG trial edits one tensor. The other tower's features do not change, so they are computed once;
in the edited tower, everything below the edited block does not change either, so the activations
*entering* that block are cached and each trial runs only the blocks from there up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool

from ..unlearn.layers import depth, tower

PRE = -1.0


def _blocks(transformer, x, start: int, attn_mask=None, stop: int | None = None):
    batch_first = getattr(transformer, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    for r in transformer.resblocks[start:stop]:
        x = r(x, attn_mask=attn_mask)
    return x if batch_first else x.transpose(0, 1)


class _Vision:
    def __init__(self, visual):
        self.v = visual

    def embed(self, images):
        return self.v._embeds(images)

    def run(self, x, start, stop=None):
        return _blocks(self.v.transformer, x, start, stop=stop)

    def head(self, x, _):
        pooled, _ = self.v._pool(x)
        return pooled @ self.v.proj if self.v.proj is not None else pooled

    @property
    def n_blocks(self):
        return len(self.v.transformer.resblocks)


class _Text:
    def __init__(self, model):
        self.m = model

    def embed(self, tokens):
        cast = self.m.transformer.get_cast_dtype()
        return self.m.token_embedding(tokens).to(cast) + self.m.positional_embedding.to(cast)

    def run(self, x, start, stop=None):
        return _blocks(self.m.transformer, x, start, attn_mask=self.m.attn_mask, stop=stop)

    def head(self, x, tokens):
        x = self.m.ln_final(x)
        x = text_global_pool(x, tokens, self.m.text_pool_type,
                             eos_token_id=getattr(self.m, "text_eos_id", None))
        proj = self.m.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj

    @property
    def n_blocks(self):
        return len(self.m.transformer.resblocks)


class FeatureCache:
    """Normalised features of named image and text batches under the model's *current* weights.

    ``prepare(layer)`` caches, for the edited tower, the activations entering the layer's block,
    and for the other tower its final features. ``features()`` then costs only the blocks at and
    above the edit. ``cached=False`` recomputes everything (the naive baseline, for benchmarks).
    """

    def __init__(self, model, images: dict[str, torch.Tensor], texts: dict[str, torch.Tensor],
                 batch_size: int = 512, cached: bool = True):
        self.model, self.images, self.texts = model, images, texts
        self.bs, self.cached = batch_size, cached
        self.towers = {"vision": _Vision(model.visual), "text": _Text(model)}
        self.inputs = {"vision": images, "text": texts}
        self.edited: str | None = None
        self.start = 0
        self.acts: dict[str, list[torch.Tensor]] = {}
        self.frozen: dict[str, torch.Tensor] = {}

    def _full(self, tw: str, data: torch.Tensor) -> torch.Tensor:
        t = self.towers[tw]
        out = []
        for i in range(0, len(data), self.bs):
            chunk = data[i:i + self.bs]
            out.append(t.head(t.run(t.embed(chunk), 0), chunk))
        return F.normalize(torch.cat(out).float(), dim=-1)

    @torch.no_grad()
    def prepare(self, layer: str) -> None:
        """Cache everything a change of ``layer`` cannot affect (call with base weights)."""
        self.edited = tower(layer)
        other = "text" if self.edited == "vision" else "vision"
        self.frozen = {k: self._full(other, v) for k, v in self.inputs[other].items()}
        t = self.towers[self.edited]
        d = depth(layer)
        self.start = 0 if d == PRE else (t.n_blocks if d >= 1e6 else int(d))
        self.acts = {}
        if d == PRE or not self.cached:
            return
        for k, data in self.inputs[self.edited].items():
            self.acts[k] = [t.run(t.embed(data[i:i + self.bs]), 0, stop=self.start)
                            for i in range(0, len(data), self.bs)]

    @torch.no_grad()
    def features(self) -> dict[str, torch.Tensor]:
        if self.edited is None or not self.cached:
            return {k: self._full(tw, v) for tw in ("vision", "text")
                    for k, v in self.inputs[tw].items()}
        t = self.towers[self.edited]
        out = dict(self.frozen)
        for k, data in self.inputs[self.edited].items():
            if k not in self.acts:  # the edit is in the embedding: nothing below it to cache
                out[k] = self._full(self.edited, data)
                continue
            chunks = []
            for i, x in enumerate(self.acts[k]):
                src = data[i * self.bs:(i + 1) * self.bs]
                chunks.append(t.head(t.run(x, self.start), src))
            out[k] = F.normalize(torch.cat(chunks).float(), dim=-1)
        return out
