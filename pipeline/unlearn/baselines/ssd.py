"""Selective Synaptic Dampening (Foster et al. 2024), as its paper defines it.

Importances are diagonal Fisher estimates: the mean over samples of the squared gradient of the
same loss (the forget loss ``1 - cos`` of a pair, which is defined per sample) on the forget set
(``I_f``) and on the retain set (``I_r``). Every entry of every tensor with more than one element
where ``I_f > alpha * I_r`` is multiplied by ``min(1, lam * I_r / I_f)``; the rest is untouched.

The reference (B11) instead dampened cumulatively over 10 "epochs" with a growing lam and used
squared batch-mean gradients; ``batch_size`` > 1 reproduces the latter approximation. Where the
reference swept lam, we search ``alpha`` (the selection threshold) like SLUG's step: the largest
alpha (fewest entries dampened) whose forget score on the search split reaches the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...datasets.pairs import PairData
from ...errors import DataError, NumericalError
from ..losses import forget_loss
from ..slug import search_step
from .common import StopRule

EPS = 1e-20


@dataclass
class SSDConfig:
    """From the ``baselines.ssd`` params group (``compare.baseline_settings``)."""
    alpha: float  # the first (gentlest) selection threshold tried
    lam: float  # dampening constant
    batch_size: int  # 1 = per-sample Fisher (the paper); >1 = squared batch means
    max_evals: int


def importance(model, data: PairData, batch_size: int, progress=lambda x, **k: x
               ) -> dict[str, torch.Tensor]:
    """Mean over batches of the squared gradient of the forget loss."""
    n = len(data.images)
    if n == 0:
        raise DataError("SSD needs a non-empty set to estimate importances")
    device = next(model.parameters()).device
    params = dict(model.named_parameters())
    acc = {k: torch.zeros_like(p, dtype=torch.float32) for k, p in params.items()}
    starts = list(range(0, n, batch_size))
    for s in progress(starts, desc="SSD importance"):
        out = model(data.images[s:s + batch_size].to(device), data.tokens[s:s + batch_size].to(device))
        loss = forget_loss(out["image_features"], out["text_features"])
        model.zero_grad(set_to_none=True)
        loss.backward()
        for k, p in params.items():
            if p.grad is not None:
                acc[k] += p.grad.float() ** 2
    model.zero_grad(set_to_none=True)
    out = {k: v / len(starts) for k, v in acc.items()}
    if not all(torch.isfinite(v).all() for v in out.values()):
        raise NumericalError("non-finite SSD importance; check the data and the model precision")
    return out


def dampening(i_f: torch.Tensor, i_r: torch.Tensor, alpha: float, lam: float) -> torch.Tensor:
    """The factor each entry is multiplied by: 1 where not selected, else min(1, lam I_r / I_f)."""
    selected = i_f > alpha * i_r
    beta = torch.clamp(lam * i_r / i_f.clamp_min(EPS), max=1.0)
    return torch.where(selected, beta, torch.ones_like(beta))


@torch.no_grad()
def apply_dampening(model, originals: dict[str, torch.Tensor], i_f: dict, i_r: dict,
                    alpha: float, lam: float) -> float:
    """Set every eligible tensor to ``original * dampening``; return the share of entries changed."""
    changed = total = 0
    for k, p in model.named_parameters():
        if p.numel() <= 1:
            continue
        d = dampening(i_f[k], i_r[k], alpha, lam)
        p.copy_((originals[k].float() * d).to(p.dtype))
        changed += int((d < 1).sum())
        total += p.numel()
    return changed / max(total, 1)


def run(model, forget: PairData, retain: PairData, cfg: SSDConfig, rule: StopRule,
        progress=lambda x, **k: x) -> None:
    """Importances once, then the alpha search; the model is left at the chosen alpha (or, if no
    alpha reached the target, at the one with the lowest forget score, then the best retain)."""
    model.eval()
    i_f = importance(model, forget, cfg.batch_size, progress)
    i_r = importance(model, retain, cfg.batch_size, progress)
    originals = {k: p.detach().clone() for k, p in model.named_parameters()}
    shares = {}

    def trial(scale: float):  # scale = alpha0 / alpha: doubling scale halves alpha
        alpha = cfg.alpha / scale
        shares[scale] = apply_dampening(model, originals, i_f, i_r, alpha, cfg.lam)
        rule(len(shares), 0.0, alpha=alpha, changed_share=shares[scale])
        c = rule.outcome.checks[-1]
        return c.forget, c.retain, {}

    res = search_step(trial, 1.0, rule.target, cfg.max_evals)
    chosen = res.best or min(res.trials, key=lambda t: (t.forget, -t.retain))
    apply_dampening(model, originals, i_f, i_r, cfg.alpha / chosen.lam, cfg.lam)
    rule.outcome.extra["alpha"] = cfg.alpha / chosen.lam
    if rule.outcome.reached:  # like SLUG's, the result exists only once the search is done
        rule.outcome.time_to_forget_s = rule.elapsed()
