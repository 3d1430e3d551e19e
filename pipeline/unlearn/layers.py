"""Layer metrics, the Pareto front per tower, and the rules that pick layers from it.

A *layer* is one weight tensor, named as in the model's ``named_parameters()``.

* importance(l) = ||g_f,l|| / ||theta_l||: how strongly the forget loss pulls on the layer,
  relative to its size;
* alignment(l) = cos(g_f,l, g_r,l) (``signed``) or its absolute value (``abs``, the reference's
  choice): how much a step on the layer also moves the retain loss.

The Pareto front (high importance, low alignment) is taken per tower: a layer is on it unless some
other layer of its tower has strictly lower alignment *and* strictly higher importance.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from ..models.structure import depth, tower
from ..params import RULES

EPS = 1e-12


def is_candidate(name: str, param: torch.Tensor, exclude: Sequence[str]) -> bool:
    """Weight tensors only: at least 2-D (matrices, conv kernels) and no excluded name part."""
    return param.ndim >= 2 and not any(part in name for part in exclude)


def layer_stats(theta: torch.Tensor, g_f: torch.Tensor, g_r: torch.Tensor) -> dict[str, float]:
    t, f, r = (x.detach().double().flatten() for x in (theta, g_f, g_r))
    nt, nf, nr = float(t.norm()), float(f.norm()), float(r.norm())
    dot = float(f @ r)
    cos = dot / max(nf * nr, EPS)
    return {"norm_theta": nt, "norm_grad_forget": nf, "norm_grad_retain": nr,
            "dot": dot, "importance": nf / max(nt, EPS), "alignment": cos,
            "abs_alignment": abs(cos), "numel": int(t.numel())}


def pareto_front(alignment: Sequence[float], importance: Sequence[float]) -> list[bool]:
    """True where no other point has strictly lower alignment and strictly higher importance."""
    n = len(alignment)
    return [not any(alignment[j] < alignment[i] and importance[j] > importance[i]
                    for j in range(n) if j != i) for i in range(n)]


def front_levels(alignment: Sequence[float], importance: Sequence[float]) -> list[int]:
    """Non-dominated sorting: 1 for the Pareto front, 2 for the front of what remains, ..."""
    level = [0] * len(alignment)
    k = 0
    while any(v == 0 for v in level):
        k += 1
        rest = [i for i, v in enumerate(level) if v == 0]
        on = pareto_front([alignment[i] for i in rest], [importance[i] for i in rest])
        for i, f in zip(rest, on):
            if f:
                level[i] = k
    return level


def annotate(rows: list[dict], signed: bool = False, fronts: int = 1) -> list[dict]:
    """Add ``tower``, ``depth``, ``ratio``, ``front_level`` and ``on_front`` (level <= ``fronts``)
    to candidate rows (in place)."""
    key = "alignment" if signed else "abs_alignment"
    for r in rows:
        r["tower"] = tower(r["name"])
        r["depth"] = depth(r["name"])
        r["ratio"] = r["importance"] / max(abs(r[key]), EPS)
    for tw in {r["tower"] for r in rows}:
        sub = [r for r in rows if r["tower"] == tw]
        levels = front_levels([r[key] for r in sub], [r["importance"] for r in sub])
        for r, lv in zip(sub, levels):
            r["front_level"] = lv
            r["on_front"] = lv <= fronts
    return rows


def select(rows: Iterable[dict], rule: str) -> list[str]:
    """Layer names to try, by rule: every front layer, the deepest front layer per tower, or the
    front layer with the best importance/alignment ratio per tower."""
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; allowed: {', '.join(RULES)}")
    front = [r for r in rows if r.get("on_front")]
    if rule == "front":
        return [r["name"] for r in sorted(front, key=lambda r: (r["tower"], r["depth"], r["name"]))]
    out = []
    for tw in sorted({r["tower"] for r in front}):
        sub = [r for r in front if r["tower"] == tw]
        key = (lambda r: (r["depth"], r["importance"])) if rule == "deepest" else \
            (lambda r: r["ratio"])
        out.append(max(sub, key=key)["name"])
    return out


def naive_choice(rows: Iterable[dict]) -> str:
    """The layer a max-importance rule picks (shown beside the Pareto choice, as a warning)."""
    return max(rows, key=lambda r: r["importance"])["name"]


def stats_table(model, g_f: dict[str, torch.Tensor], g_r: dict[str, torch.Tensor],
                exclude: Sequence[str]) -> list[dict]:
    """One row of ``layer_stats`` per parameter, flagged ``candidate`` (see ``is_candidate``)."""
    return [{"name": name, **layer_stats(theta, g_f[name], g_r[name]),
             "candidate": is_candidate(name, theta, exclude)}
            for name, theta in model.named_parameters()]
