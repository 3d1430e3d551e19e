"""Split-half reliability of the layer ranking, from the one gradient pass.

Each set (forget, retain) is cut into two disjoint halves A and B; each half's mean per-sample
gradient is computed on its own, and the full gradient is their size-weighted combination,
``g = (n_a * g_a + n_b * g_b) / n``. That is exactly what ``gradients.mean_gradient`` computes in
one pass when the batches are laid out the same way, so the cut is put on a batch boundary: the
first ``ceil(n / 2)`` pairs rounded to a multiple of the batch size (no batch crosses it, and the
retain set's 1-pair last batch is folded as in the plain pass). When no batch-aligned cut exists
(fewer pairs than about two batches) the halves are cut at ``ceil(n / 2)`` and the full retain
gradient comes from one more plain pass over the set (at most about two batches), because the
contrastive loss depends on how pairs are grouped into batches; the forget loss is a per-pair
mean, so its combination is exact either way.

Per layer, each half gives its own importance and alignment (``*_a``, ``*_b``), and the halves'
gradients are compared directly (``retain_half_cosine = cos(g_r,a, g_r,b)``, likewise forget).
``reliability`` then says, per tower, how well half A's ranking predicts half B's: the Spearman
rank correlation of alignment and of importance over the candidate layers, the Jaccard overlap of
the layers on the first ``fronts`` Pareto fronts of each half, how many selected layers are on both
halves' fronts, and the median half cosines. A split-half correlation measures the reliability of
a set of *half* the size; the Spearman-Brown value ``2r / (1 + r)`` estimates it for the full set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..datasets.pairs import PairData
from . import layers as L
from .gradients import GradientResult, head, mean_gradient, only_trainable

MIN_PAIRS = {"forget": 1, "retain": 2}  # the smallest set each loss can take
HALF_COLUMNS = ("importance_a", "importance_b", "alignment_a", "alignment_b", "abs_alignment_a",
                "abs_alignment_b", "retain_half_cosine", "forget_half_cosine")


@dataclass
class SplitGradients(GradientResult):
    """A ``GradientResult`` (the full gradients) plus each half's gradients and sizes."""
    forget_halves: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None
    retain_halves: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None
    forget_sizes: tuple[int, int] | None
    retain_sizes: tuple[int, int] | None
    aligned: dict[str, bool]  # per loss: the cut lies on a batch boundary of the plain pass

    def describe(self) -> dict:
        """The halves, for a manifest."""
        return {"forget": list(self.forget_sizes or ()), "retain": list(self.retain_sizes or ()),
                "batch_aligned": self.aligned}


def half_boundary(n: int, batch_size: int, loss_kind: str) -> tuple[int, bool] | None:
    """Where half A ends and whether that is a batch boundary of the plain pass; ``None`` when the
    set is too small for two halves the loss can take."""
    lo = MIN_PAIRS[loss_kind]
    if n < 2 * lo:
        return None
    h = math.ceil(n / 2)
    top = (n - lo) // batch_size * batch_size  # the last multiple that leaves half B >= lo pairs
    if top >= batch_size:
        return min(max(round(h / batch_size) * batch_size, batch_size), top), True
    return min(h, n - lo), False


def _part(data: PairData, s: int, e: int) -> PairData:
    return PairData(data.images[s:e], data.tokens[s:e], data.captions[s:e], data.report,
                    data.keys[s:e])


def _combine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], wa: float, wb: float
             ) -> dict[str, torch.Tensor]:
    return {k: wa * a[k] + wb * b[k] for k in a}


def split_gradient(model, data: PairData, loss_kind: str, batch_size: int):
    """``(full, loss, halves, sizes, aligned)`` for one set; ``halves``/``sizes`` are ``None``
    when the set cannot be split (then ``full`` is the plain pass)."""
    n = len(data.images)
    cut = half_boundary(n, batch_size, loss_kind)
    if cut is None:
        full, loss = mean_gradient(model, data, loss_kind, batch_size)
        return full, loss, None, None, False
    m, aligned = cut
    g_a, l_a = mean_gradient(model, _part(data, 0, m), loss_kind, batch_size)
    g_b, l_b = mean_gradient(model, _part(data, m, n), loss_kind, batch_size)
    wa, wb = m / n, (n - m) / n
    if aligned or loss_kind == "forget":
        full, loss = _combine(g_a, g_b, wa, wb), wa * l_a + wb * l_b
    else:  # the contrastive loss depends on the batch layout: one more (small) plain pass
        full, loss = mean_gradient(model, data, loss_kind, batch_size)
    return full, loss, (g_a, g_b), (m, n - m), aligned


def split_pass(model, forget: PairData, retain, batch_size: int,
               trainable: Callable[[str], bool] | None = None,
               max_forget: int | None = None) -> SplitGradients:
    """``gradients.gradient_pass`` with each set cut in two halves (see the module doc); the full
    gradients are the plain pass's (to rounding) when the cuts are batch-aligned. ``retain``: a
    ``PairData`` or a ``retain_pool.PoolRequest``, whose halves are the pool's."""
    forget = head(forget, max_forget)
    model.eval()
    with only_trainable(model, trainable):
        g_f, l_f, fh, fs, fal = split_gradient(model, forget, "forget", batch_size)
        if isinstance(retain, PairData):
            g_r, l_r, rh, rs, ral = split_gradient(model, retain, "retain", batch_size)
            n_r = len(retain.images)
        else:
            r = retain.compute(model)
            g_r, l_r, rh, rs, ral, n_r = r.full, r.loss, r.halves, r.sizes, True, r.n
    return SplitGradients(g_f, g_r, l_f, l_r, len(forget.images), n_r, fh, rh, fs,
                          rs, {"forget": fal, "retain": ral})


def _cos(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.detach().double().flatten(), y.detach().double().flatten()
    return float(x @ y) / max(float(x.norm()) * float(y.norm()), L.EPS)


def half_stats(theta: torch.Tensor, f_a, f_b, r_a, r_b) -> dict[str, float]:
    """One layer's half columns (``HALF_COLUMNS``)."""
    a, b = L.layer_stats(theta, f_a, r_a), L.layer_stats(theta, f_b, r_b)
    return {"importance_a": a["importance"], "importance_b": b["importance"],
            "alignment_a": a["alignment"], "alignment_b": b["alignment"],
            "abs_alignment_a": a["abs_alignment"], "abs_alignment_b": b["abs_alignment"],
            "retain_half_cosine": _cos(r_a, r_b), "forget_half_cosine": _cos(f_a, f_b)}


def stats_table(model, g: SplitGradients, exclude: Sequence[str]) -> list[dict]:
    """``layers.stats_table`` of the full gradients, each row with its half columns when both sets
    could be split."""
    rows = L.stats_table(model, g.forget, g.retain, exclude)
    if g.forget_halves is None or g.retain_halves is None:
        return rows
    params = dict(model.named_parameters())
    (fa, fb), (ra, rb) = g.forget_halves, g.retain_halves
    for r in rows:
        k = r["name"]
        r.update(half_stats(params[k], fa[k], fb[k], ra[k], rb[k]))
    return rows


# --------------------------------------------------------------------------------------------
# agreement between the halves


def ranks(x: Sequence[float]) -> np.ndarray:
    """Ranks from 1, ties given their average rank."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tied = x == v
        if tied.sum() > 1:
            r[tied] = r[tied].mean()
    return r


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson on average ranks); ``None`` with fewer than 3 points
    or a constant input."""
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} vs {len(y)} values")
    if len(x) < 3:
        return None
    rx, ry = ranks(x) - (len(x) + 1) / 2, ranks(y) - (len(y) + 1) / 2
    den = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / den if den > 0 else None


def jaccard(a: set, b: set) -> float:
    """|A & B| / |A | B| (1.0 for two empty sets)."""
    return len(a & b) / len(a | b) if a | b else 1.0


def spearman_brown(r: float | None) -> float | None:
    """The reliability of the full set predicted from the split-half correlation ``r``
    (``2r / (1 + r)``); 0 when ``r <= 0``: no reliability to extrapolate."""
    return None if r is None else 2 * r / (1 + r) if r > 0 else 0.0


def front_set(rows: Sequence[dict], align_key: str, imp_key: str, fronts: int) -> set[str]:
    """The names on the first ``fronts`` Pareto fronts of ``rows`` (one tower) by the given
    columns."""
    levels = L.front_levels([r[align_key] for r in rows], [r[imp_key] for r in rows])
    return {r["name"] for r, lv in zip(rows, levels) if lv <= fronts}


def _r4(x):
    return None if x is None else round(float(x), 4)


def reliability(rows: Sequence[dict], signed: bool, fronts: int, selected: Sequence[str]
                ) -> dict | None:
    """Per tower, how well half A's ranking agrees with half B's (see the module doc), rounded to
    4 digits; ``None`` when the rows have no half columns (a set too small to split)."""
    if not rows or any(c not in r for r in rows for c in HALF_COLUMNS):
        return None
    key = "alignment" if signed else "abs_alignment"
    out = {}
    for tw in sorted({r["tower"] for r in rows}):
        sub = [r for r in rows if r["tower"] == tw]
        fa = front_set(sub, f"{key}_a", "importance_a", fronts)
        fb = front_set(sub, f"{key}_b", "importance_b", fronts)
        sel = [r["name"] for r in sub if r["name"] in set(selected)]
        rho = spearman([r[f"{key}_a"] for r in sub], [r[f"{key}_b"] for r in sub])
        out[tw] = {
            "layers": len(sub),
            "alignment_spearman": _r4(rho),
            "alignment_spearman_brown": _r4(spearman_brown(rho)),
            "importance_spearman": _r4(spearman([r["importance_a"] for r in sub],
                                                [r["importance_b"] for r in sub])),
            "front_jaccard": _r4(jaccard(fa, fb)),
            "selected": len(sel),
            "selected_on_both_fronts": sum(n in fa and n in fb for n in sel),
            "retain_half_cosine_median": _r4(np.median([r["retain_half_cosine"] for r in sub])),
            "forget_half_cosine_median": _r4(np.median([r["forget_half_cosine"] for r in sub]))}
    return out


def summary_line(rel: dict | None) -> str:
    """One line for the stage's output."""
    if rel is None:
        return "reliability: not available (a set too small to split in halves)"
    return "reliability (split-half): " + "; ".join(
        f"{tw} alignment rho {v['alignment_spearman']}, importance rho "
        f"{v['importance_spearman']}, front Jaccard {v['front_jaccard']}, retain half-cos "
        f"{v['retain_half_cosine_median']}" for tw, v in rel.items())
