"""The single-layer step and the step-size search.

Step: ``theta_l <- theta_l0 + lambda * g_f,l`` with ``lambda > 0``, where ``g_f`` is the stored
gradient of ``L_f = mean(1 - cos)``: ascent on ``L_f``, so the forget pairs' cosine falls.

Search (per layer): start at ``lambda_0 = scale0 * ||theta|| / ||g||`` (an update of 10 % of the
layer's norm by default), double until the forget score reaches the target, then bisect between
the largest failing and the smallest passing step; at most ``max_evals`` evaluations. The result is
the smallest passing step found (the gentlest edit that forgets), or none if the target was never
reached. Only the edited tensor is touched; it is restored exactly after every trial.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import torch

from . import layers as L
from .gradients import gradient_pass


@contextlib.contextmanager
def edited(param: torch.nn.Parameter, grad: torch.Tensor, lam: float):
    """Temporarily set ``param = theta0 + lam * grad``; restore the original bytes afterwards."""
    theta0 = param.detach().clone()
    with torch.no_grad():
        param.add_(grad.to(param.device, param.dtype), alpha=lam)
    try:
        yield
    finally:
        with torch.no_grad():
            param.copy_(theta0)


@dataclass
class Trial:
    lam: float
    forget: float
    retain: float
    passed: bool
    extra: dict = field(default_factory=dict)


@dataclass
class SearchResult:
    trials: list[Trial]
    best: Trial | None


def search_step(evaluate: Callable[[float], tuple[float, float, dict]], lam0: float,
                target: float, max_evals: int = 10) -> SearchResult:
    """Bracket by doubling, then bisect; ``evaluate(lam) -> (forget, retain, extra)``.

    ``forget`` must fall as ``lam`` grows for the bracket to be meaningful (monotone response).
    """
    if lam0 <= 0:
        raise ValueError("the initial step must be positive")
    trials: list[Trial] = []
    lo, hi = 0.0, None  # lo: largest failing step, hi: smallest passing step
    lam = lam0
    for _ in range(max_evals):
        forget, retain, extra = evaluate(lam)
        t = Trial(lam, forget, retain, forget <= target, extra)
        trials.append(t)
        if t.passed:
            hi = lam
        else:
            lo = lam
        lam = lam * 2 if hi is None else 0.5 * (lo + hi)
    passing = [t for t in trials if t.passed]
    best = min(passing, key=lambda t: t.lam) if passing else None
    return SearchResult(trials, best)


@dataclass
class LayerSearch:
    layer: str
    rho: float  # ||theta|| / ||g||
    result: SearchResult


def run_slug(model, grads: dict[str, torch.Tensor], layers: list[str], scorer, target: float,
             max_evals: int = 10, scale0: float = 0.1, progress=lambda x, **k: x
             ) -> tuple[list[LayerSearch], LayerSearch | None]:
    """Search a step for every candidate layer; choose, among the layers that reach the forget
    target, the one with the best retain score (ties: the smaller relative update)."""
    params = dict(model.named_parameters())
    searches = []
    for layer in progress(layers, desc="step search"):
        p, g = params[layer], grads[layer].to(params[layer].device)
        rho = float(p.detach().norm() / g.norm().clamp_min(1e-12))
        scorer.prepare(layer)  # caches under the base weights

        def evaluate(lam, p=p, g=g):
            with edited(p, g, lam):
                return scorer.score()

        searches.append(LayerSearch(layer, rho, search_step(evaluate, scale0 * rho, target,
                                                            max_evals)))
    ok = [s for s in searches if s.result.best is not None]
    chosen = max(ok, key=lambda s: (s.result.best.retain, -s.result.best.lam / s.rho),
                 default=None)
    return searches, chosen


def unlearn(model, forget, retain, scorer, *, batch_size: int, exclude, signed: bool, fronts: int,
            rule: str, target: float, max_evals: int = 10, scale0: float = 0.1,
            progress=lambda x, **k: x) -> tuple[list[LayerSearch], LayerSearch | None, dict]:
    """SLUG in one call: one gradient pass, the layer ranking, the step search. The gradients,
    rank and unlearn stages do the same in turn, with their artifacts in between; this is what
    the comparison times end to end. Returns the searches, the chosen one and the forget
    gradients."""
    g = gradient_pass(model, forget, retain, batch_size)
    cands = [r for r in L.stats_table(model, g.forget, g.retain, exclude) if r["candidate"]]
    layers = L.select(L.annotate(cands, signed, fronts), rule)
    searches, chosen = run_slug(model, g.forget, layers, scorer, target, max_evals, scale0,
                                progress)
    return searches, chosen, g.forget
