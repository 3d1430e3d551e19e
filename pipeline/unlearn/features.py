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

from ..models.structure import EMBEDDING, HEAD, depth, tower


def _blocks(transformer, x, start: int, attn_mask=None, stop: int | None = None):
    batch_first = getattr(transformer, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    for r in transformer.resblocks[start:stop]:
        x = r(x, attn_mask=attn_mask)
    return x if batch_first else x.transpose(0, 1)


def _sublayer(layer: str) -> str | None:
    """Which part of a residual block an edit touches, where finer caching is possible."""
    for part in ("mlp.c_proj", "mlp.c_fc", "attn.out_proj"):
        if f".{part}." in layer:
            return part
    return None


def _attention_inputs(block, x, attn_mask):
    """The multi-head attention output *before* its output projection (what out_proj sees)."""
    attn = block.attn
    h = block.ln_1(x)
    q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    b, n, d = q.shape
    heads = attn.num_heads

    def split(t):
        return t.view(b, n, heads, d // heads).transpose(1, 2)

    mask = attn_mask.to(q.dtype) if attn_mask is not None else None
    out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask)
    return out.transpose(1, 2).reshape(b, n, d)


def sublayer_inputs(block, x, attn_mask) -> dict[str, torch.Tensor]:
    """What each linear map of a residual block reads, for the block's input ``x``: the
    attention's input projection (``attn.in_proj``), its output projection, the MLP's two maps."""
    h = block.ln_1(x)
    a = _attention_inputs(block, x, attn_mask)
    y = x + block.ls_1(F.linear(a, block.attn.out_proj.weight, block.attn.out_proj.bias))
    u = block.ln_2(y)
    return {"attn.in_proj": h, "attn.out_proj": a, "mlp.c_fc": u,
            "mlp.c_proj": block.mlp.gelu(block.mlp.c_fc(u))}


def _split(block, x, part: str, attn_mask):
    """State to cache for an edit of ``part``: everything the edited sub-layer does not change."""
    if part == "attn.out_proj":
        return (x, _attention_inputs(block, x, attn_mask))
    y = x + block.ls_1(block.attention(q_x=block.ln_1(x), attn_mask=attn_mask))
    u = block.ln_2(y)
    if part == "mlp.c_fc":
        return (y, u)
    return (y, block.mlp.gelu(block.mlp.c_fc(u)))  # mlp.c_proj


def _linear(block, part: str) -> torch.nn.Linear:
    """The linear map an edit of ``part`` changes."""
    return {"attn.out_proj": block.attn.out_proj, "mlp.c_fc": block.mlp.c_fc,
            "mlp.c_proj": block.mlp.c_proj}[part]


def _resume(block, state, part: str, lin: torch.Tensor | None = None):
    """The block's output from its cached ``state``; ``lin`` is the edited linear map's output
    when it is already known (the shortcut), else it is computed under the current weights."""
    x, inp = state  # inp: what the edited linear map reads
    if lin is None:
        lin = _linear(block, part)(inp)
    if part == "attn.out_proj":
        y = x + block.ls_1(lin)
        return y + block.ls_2(block.mlp(block.ln_2(y)))
    if part == "mlp.c_fc":
        return x + block.ls_2(block.mlp.c_proj(block.mlp.gelu(lin)))
    return x + block.ls_2(lin)


class _Shortcut:
    """For an edit of a linear map's weight or bias along ``direction`` (``theta0 + lam * D``),
    the map's output is ``y0 + lam * (D applied to its input)``: both terms are computed once
    per layer, and a trial finds ``lam`` from the tensor as it is now. A tensor that is not
    ``theta0 + lam * D`` (to float rounding) gets ``None``: the caller recomputes."""

    TOL = 1e-5

    def __init__(self, param: torch.nn.Parameter, direction: torch.Tensor, is_bias: bool):
        self.param, self.is_bias = param, is_bias
        self.theta0 = param.detach().clone()
        self.d = direction.to(param.device, param.dtype)
        self.dd = float((self.d * self.d).sum())

    def terms(self, linear: torch.nn.Linear, inp: torch.Tensor) -> tuple:
        y0 = linear(inp)
        return y0, (self.d if self.is_bias else F.linear(inp, self.d))

    def lam(self) -> float | None:
        delta = self.param.detach() - self.theta0
        if self.dd == 0:
            return None
        lam = float((delta * self.d).sum()) / self.dd
        off = float((delta - lam * self.d).norm())
        return lam if off <= self.TOL * max(float(delta.norm()), 1e-12) else None


class _Vision:
    def __init__(self, visual):
        self.v = visual

    def embed(self, images):
        return self.v._embeds(images)

    def run(self, x, start, stop=None):
        return _blocks(self.v.transformer, x, start, stop=stop)

    mask = None

    @property
    def blocks(self):
        return self.v.transformer.resblocks

    def pre_head(self, x, _):
        """What the final projection reads."""
        pooled, _ = self.v._pool(x)
        return pooled

    def head(self, x, src):
        pooled = self.pre_head(x, src)
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

    @property
    def mask(self):
        return self.m.attn_mask

    @property
    def blocks(self):
        return self.m.transformer.resblocks

    def pre_head(self, x, tokens):
        """What the final projection reads."""
        return text_global_pool(self.m.ln_final(x), tokens, self.m.text_pool_type,
                                eos_token_id=getattr(self.m, "text_eos_id", None))

    def head(self, x, tokens):
        x = self.pre_head(x, tokens)
        proj = self.m.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj

    @property
    def n_blocks(self):
        return len(self.m.transformer.resblocks)


def towers(model) -> dict:
    """Each tower of an open_clip CLIP as the step functions the caches run."""
    return {"vision": _Vision(model.visual), "text": _Text(model)}


class FeatureCache:
    """Normalised features of named image and text batches under the model's *current* weights.

    ``prepare(layer)`` caches, for the edited tower, the activations entering the layer's block,
    and for the other tower its final features. ``features()`` then costs only the blocks at and
    above the edit. What ``prepare`` computes is kept per layer (and the frozen features per
    tower), so a search that moves between layers prepares each once: the base weights must not
    change during the cache's life (make a new one if they do). ``cached=False`` recomputes
    everything (the naive baseline, for benchmarks).

    ``shortcut``: when ``prepare`` is also given the edit's direction and the layer is a linear
    map's weight or bias inside a block (attention output, MLP in or out), the map's output at
    the base weights and the direction's own output are cached too, so a trial starts *after*
    the edited map (``_Shortcut``). It costs two of that map's outputs in memory per layer.
    """

    def __init__(self, model, images: dict[str, torch.Tensor], texts: dict[str, torch.Tensor],
                 batch_size: int = 512, cached: bool = True, shortcut: bool = True):
        self.model, self.images, self.texts = model, images, texts
        self.bs, self.cached, self.shortcut = batch_size, cached, shortcut
        self.towers = towers(model)
        self.inputs = {"vision": images, "text": texts}
        self.edited: str | None = None
        self.start = 0
        self.part: str | None = None
        self.acts: dict[str, list[torch.Tensor]] = {}
        self.frozen: dict[str, torch.Tensor] = {}
        self._frozen: dict[str, dict[str, torch.Tensor]] = {}  # per frozen tower
        self._states: dict[str, tuple] = {}  # per layer: (start, part, acts)
        self.lin: tuple | None = None  # (_Shortcut, {key: [(y0, d) per chunk]}) of the layer
        self._lins: dict[str, tuple] = {}

    def _full(self, tw: str, data: torch.Tensor) -> torch.Tensor:
        t = self.towers[tw]
        out = []
        for i in range(0, len(data), self.bs):
            chunk = data[i:i + self.bs]
            out.append(t.head(t.run(t.embed(chunk), 0), chunk))
        return F.normalize(torch.cat(out).float(), dim=-1)

    @torch.no_grad()
    def prepare(self, layer: str, direction: torch.Tensor | None = None) -> None:
        """Cache everything a change of ``layer`` cannot affect (call with base weights); with
        the edit's ``direction``, the shortcut's terms too (see the class doc)."""
        self.edited = tower(layer)
        other = "text" if self.edited == "vision" else "vision"
        if other not in self._frozen or not self.cached:
            self._frozen[other] = {k: self._full(other, v) for k, v in self.inputs[other].items()}
        self.frozen = self._frozen[other]
        if layer not in self._states or not self.cached:
            self._states[layer] = self._state(layer)
        self.start, self.part, self.acts = self._states[layer]
        self.lin = None
        if self.shortcut and direction is not None and self.part and self.acts:
            if layer not in self._lins:
                self._lins[layer] = self._shortcut(layer, direction)
            self.lin = self._lins[layer]

    def _shortcut(self, layer: str, direction: torch.Tensor) -> tuple:
        linear = _linear(self.towers[self.edited].blocks[self.start], self.part)
        is_bias = layer.endswith(".bias")
        cut = _Shortcut(linear.bias if is_bias else linear.weight, direction, is_bias)
        return cut, {k: [cut.terms(linear, state[1]) for state in chunks]
                     for k, chunks in self.acts.items()}

    def _state(self, layer: str) -> tuple:
        t = self.towers[self.edited]
        d = depth(layer)
        start = 0 if d == EMBEDDING else (t.n_blocks if d >= HEAD else int(d))
        part = _sublayer(layer) if EMBEDDING < d < HEAD else None
        acts = {}
        if d == EMBEDDING or not self.cached:
            return start, part, acts
        for k, data in self.inputs[self.edited].items():
            chunks = []
            for i in range(0, len(data), self.bs):
                x = t.run(t.embed(data[i:i + self.bs]), 0, stop=start)
                chunks.append(_split(t.blocks[start], x, part, t.mask) if part else x)
            acts[k] = chunks
        return start, part, acts

    @torch.no_grad()
    def features(self, only: set[str] | None = None) -> dict[str, torch.Tensor]:
        """Features of every named input (or of ``only`` those) under the current weights."""
        want = (lambda k: only is None or k in only)
        if self.edited is None or not self.cached:
            return {k: self._full(tw, v) for tw in ("vision", "text")
                    for k, v in self.inputs[tw].items() if want(k)}
        t = self.towers[self.edited]
        lam = self.lin[0].lam() if self.lin else None
        out = {k: v for k, v in self.frozen.items() if want(k)}
        for k, data in self.inputs[self.edited].items():
            if not want(k):
                continue
            if k not in self.acts:  # the edit is in the embedding: nothing below it to cache
                out[k] = self._full(self.edited, data)
                continue
            chunks = []
            for i, state in enumerate(self.acts[k]):
                src = data[i * self.bs:(i + 1) * self.bs]
                if self.part:
                    lin = None
                    if lam is not None:
                        y0, d = self.lin[1][k][i]
                        lin = y0 + lam * d
                    x = _resume(t.blocks[self.start], state, self.part, lin)
                    x = t.run(x, self.start + 1)
                else:
                    x = t.run(state, self.start)
                chunks.append(t.head(x, src))
            out[k] = F.normalize(torch.cat(chunks).float(), dim=-1)
        return out
