"""Selective SLUG (``unlearn.selectivity: nullspace``): the step kept off the inputs that retained
data feed the edited layer, so their outputs of that layer do not move.

A linear map ``y = W x`` edited by ``dW`` changes a retained input's output by ``dW x``. With
``X_r`` every input the retained data give the layer (every token position of every retained
caption or prompt, every patch token of every retained image, in one forward pass), and ``P_r``
the projector onto the top eigenvectors of ``X_r X_r^T`` that hold ``energy`` of its trace, the
projected step ``dW (I - P_r)`` leaves ``dW x = 0`` for every ``x`` in that span. Its size is then
searched exactly as the faithful step's (``pipeline.unlearn.slug``): the rule does not change,
only the direction does.

Where the input of a searched tensor is known here: the weights of a residual block's linear maps
(the attention's input and output projections, the MLP's two maps), the towers' final projections
(``visual.proj``, ``text_projection``) and the patch embedding (``visual.conv1``, a linear map of
each image patch). A bias reads a constant 1, which every retained input has: projected, its
step would be 0. A tensor without a projection here is left out: the search does not try it
(``Projection.skipped`` says which).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..datasets.pairs import PairData
from ..models.structure import EMBEDDING, HEAD, depth, tower
from .features import sublayer_inputs, towers

BLOCK_PARTS = {"attn.in_proj_weight": "attn.in_proj", "attn.out_proj.weight": "attn.out_proj",
               "mlp.c_fc.weight": "mlp.c_fc", "mlp.c_proj.weight": "mlp.c_proj"}
HEADS = {"visual.proj": "vision", "text_projection": "text"}


def _site(name: str) -> tuple[str, int | str, str] | None:
    """``(tower, block index or "head" / "patch", part)`` of a tensor whose input is known here."""
    if name in HEADS:
        return HEADS[name], "head", "proj"
    if name == "visual.conv1.weight":
        return "vision", "patch", "conv1"
    d = depth(name)
    if EMBEDDING < d < HEAD:
        part = next((p for k, p in BLOCK_PARTS.items() if name.endswith(k)), None)
        if part is not None:
            return tower(name), int(d), part
    return None


def projectable(name: str) -> bool:
    return _site(name) is not None


def projector(cov: torch.Tensor, energy: float) -> tuple[torch.Tensor, int]:
    """The orthogonal projector onto the fewest top eigenvectors of ``cov`` (symmetric, PSD)
    holding at least ``energy`` of its trace (never more than its numerical rank), and how many
    it keeps."""
    vals, vecs = torch.linalg.eigh(cov.double())
    vals, vecs = vals.flip(0).clamp_min(0), vecs.flip(1)
    total = float(vals.sum())
    if total <= 0:
        return torch.zeros_like(cov), 0
    share = torch.cumsum(vals, 0) / total
    tol = vals[0] * len(vals) * 10 * torch.finfo(cov.dtype).eps  # below: rounding of cov's dtype
    rank = int((vals > tol).sum())  # the numerical rank
    k = min(int((share < energy - 1e-12).sum()) + 1, rank)
    u = vecs[:, :k]
    return (u @ u.T).to(cov.dtype), k


def project_step(name: str, grad: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """``grad`` with its component along the retained inputs removed (``proj`` over the layer's
    input dimension)."""
    if name in HEADS:  # x @ P: the input dimension is the first
        return grad - proj @ grad
    flat = grad.reshape(grad.shape[0], -1)  # (out, in) and conv1's (width, 3 * p * p)
    return (flat - flat @ proj).reshape(grad.shape)


def _patches(visual, images: torch.Tensor) -> torch.Tensor:
    k = visual.conv1.kernel_size
    s = visual.conv1.stride
    cols = F.unfold(images, kernel_size=k, stride=s)  # (n, 3 * p * p, patches)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


@dataclass
class Projection:
    steps: dict[str, torch.Tensor]  # the projected forget gradients
    kept: dict[str, int]  # per tensor: the retained directions removed (the projector's rank)
    dims: dict[str, int]  # per tensor: its input dimension
    skipped: list[str]  # tensors with no projection here (not searched)
    rows: int  # retained pairs the inputs came from
    energy: float

    def summary(self, layer: str) -> dict:
        """For metrics: how ``layer``'s step was projected."""
        return {"mode": "nullspace", "energy": self.energy, "kept": self.kept.get(layer),
                "input_dim": self.dims.get(layer), "projection_pairs": self.rows,
                "skipped_layers": self.skipped}


@dataclass
class Projectors:
    """Per tensor, the projector onto its retained inputs (``projectors``); one forward pass
    serves every forget gradient projected with it (several concepts at once)."""
    mats: dict[str, torch.Tensor]  # over each tensor's input dimension
    kept: dict[str, int]
    skipped: list[str]
    rows: int
    energy: float

    def project(self, grads: dict[str, torch.Tensor]) -> Projection:
        """``grads`` (a subset of the names given to ``projectors``) off their retained inputs;
        the names without a projection are left out."""
        steps = {n: project_step(n, g, self.mats[n].to(g.device, g.dtype))
                 for n, g in grads.items() if n in self.mats}
        return Projection(steps, {n: self.kept[n] for n in steps},
                          {n: self.mats[n].shape[0] for n in steps},
                          sorted(n for n in grads if n not in self.mats), self.rows, self.energy)


@torch.no_grad()
def projectors(model, names, retain: PairData, energy: float, batch_size: int = 64
               ) -> Projectors:
    """The projector of every tensor of ``names`` whose input is known here, from ``retain``'s
    images (the vision tower) and captions (the text tower), one forward pass per tower."""
    sites = {n: _site(n) for n in names}
    skipped = sorted(n for n, s in sites.items() if s is None)
    need = {n: s for n, s in sites.items() if s is not None}
    covs: dict[tuple, torch.Tensor] = {}

    def add(key, x):
        x = x.reshape(-1, x.shape[-1]).double()
        covs[key] = covs.get(key, 0) + x.T @ x

    steppers = towers(model)
    device = next(model.parameters()).device
    for tw, data in (("vision", retain.images), ("text", retain.tokens)):
        t = steppers[tw]
        wanted = {s[1:] for s in need.values() if s[0] == tw}
        if not wanted:
            continue
        blocks = {b for b, _ in wanted if isinstance(b, int)}
        for i in range(0, len(data), batch_size):
            chunk = data[i:i + batch_size].to(device)
            if ("patch", "conv1") in wanted:
                add((tw, "patch", "conv1"), _patches(model.visual, chunk))
            x = t.embed(chunk)
            for b in range(max(blocks, default=-1) + 1):
                if b in blocks:
                    for part, inp in sublayer_inputs(t.blocks[b], x, t.mask).items():
                        if (b, part) in wanted:
                            add((tw, b, part), inp)
                x = t.run(x, b, stop=b + 1)
            if ("head", "proj") in wanted:
                x = t.run(x, max(blocks, default=-1) + 1)
                add((tw, "head", "proj"), t.pre_head(x, chunk))
    projs = {key: projector(c, energy) for key, c in covs.items()}
    return Projectors({n: projs[s][0] for n, s in need.items()},
                      {n: projs[s][1] for n, s in need.items()}, skipped, len(retain.images),
                      energy)


def project(model, grads: dict[str, torch.Tensor], retain: PairData, energy: float,
            batch_size: int = 64) -> Projection:
    """Project every tensor of ``grads`` off the span of its retained inputs (``projectors``)."""
    return projectors(model, grads, retain, energy, batch_size).project(grads)
