"""SLUG's one entry point: rank the layers, search a step on each, return the result.

Step: ``theta_l <- theta_l0 + lambda * g_f,l`` with ``lambda > 0``, where ``g_f`` is the stored
gradient of ``L_f = mean(1 - cos)``: ascent on ``L_f``, so the forget pairs' cosine falls.
``edited`` applies it for a trial and ``Slug.tensors`` for the patch; nothing else does.

Search (per layer): start at ``lambda_0 = scale0 * ||theta|| / ||g||`` (an update of 10 % of the
layer's norm by default), double until the forget score reaches the target, then bisect between
the largest failing and the smallest passing step; at most ``max_evals`` evaluations. A layer's
result is its smallest passing step (the gentlest edit that forgets). Among the layers that pass,
the one with the best retain score wins (ties: the smaller relative step). When none passes, an
optional ``fallback`` hook may still name a trial (the canvas benchmark reports the strongest one,
flagged as not reached).

The CLIP, diffusion and canvas paths differ only in the *scorer* they pass (``Scorer``) and in
which layers their consumer reads (``readable``).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import torch

from ..errors import DataError
from ..params import MAX_FRONTS
from . import layers as L
from .gradients import GradientResult, gradient_pass


class Scorer(Protocol):
    """Scores the model as it is now. ``prepare(layer)`` is called under the base weights before
    the trials of ``layer`` (a scorer may cache what an edit of that layer cannot change);
    ``score()`` returns ``(forget, retain, extra)``: lower forget is more forgotten, higher retain
    is better, ``extra`` holds any diagnostics to record with the trial."""

    def prepare(self, layer: str) -> None: ...

    def score(self) -> tuple[float, float, dict]: ...


def step(theta: torch.Tensor, grad: torch.Tensor, lam: float) -> torch.Tensor:
    """The SLUG update of one tensor (a new tensor; ``theta`` is not modified)."""
    return theta + lam * grad.to(theta.device, theta.dtype)


@contextlib.contextmanager
def edited(param: torch.nn.Parameter, grad: torch.Tensor, lam: float):
    """Temporarily set ``param = theta0 + lam * grad``; restore the original bytes afterwards."""
    theta0 = param.detach().clone()
    with torch.no_grad():
        param.copy_(step(theta0, grad, lam))
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
                target: float, max_evals: int) -> SearchResult:
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
    rho: float  # ||theta|| / ||g||: lambda / rho is the update's norm relative to the layer's
    result: SearchResult

    def rel(self, lam: float) -> float:
        return lam / self.rho


@dataclass(frozen=True)
class SearchConfig:
    target: float  # a trial passes when its forget score is <= target
    max_evals: int  # per layer
    scale0: float  # the first step's norm relative to the layer's


@dataclass(frozen=True)
class RankConfig:
    signed: bool  # alignment cos(g_f, g_r) (the paper) or |cos| (the reference)
    fronts: int  # search the first N Pareto fronts of each tower
    rule: str  # front | deepest | best_ratio (params.RULES)


Fallback = Callable[[list[LayerSearch]], "tuple[LayerSearch, Trial] | None"]


@dataclass
class Slug:
    """What one SLUG run found: every layer's search and the chosen layer and trial."""
    searches: list[LayerSearch]
    chosen: LayerSearch | None
    trial: Trial | None
    reached: bool  # the chosen trial passed the search criterion (not a fallback)
    grads: dict[str, torch.Tensor]  # forget gradients of (at least) the searched layers
    ranking: list[dict] = field(default_factory=list)  # the ranked candidate rows, when ranked here
    gradients: GradientResult | None = None  # the gradient pass, when it ran here
    before: tuple[float, float, dict] | None = None  # the scorer at the base weights, if asked
    time_s: float = 0.0  # the search (and the base score), wall clock

    @property
    def layer(self) -> str:
        return self.chosen.layer

    @property
    def lam(self) -> float:
        return self.trial.lam

    @property
    def rel_step(self) -> float:
        return self.chosen.rel(self.trial.lam)

    @property
    def evaluations(self) -> int:
        return sum(len(s.result.trials) for s in self.searches)

    def tensors(self, model) -> dict[str, torch.Tensor]:
        """The edited tensor(s), as a patch stores them."""
        theta = model.state_dict()[self.layer]
        return {self.layer: step(theta, self.grads[self.layer], self.lam)}

    def patch(self, model, head: dict, **tail):
        """A ``Patch`` with the manifest ``head`` (concept, kind), then the layer, step and
        relative step, then ``tail`` (provenance)."""
        from .patch import Patch

        return Patch(self.tensors(model), {**head, "layers": [self.layer], "lambda": self.lam,
                                           "rel_step": self.rel_step, **tail})


def choose(searches: Sequence[LayerSearch]) -> LayerSearch | None:
    """Among the layers whose search passed: the best retain score; ties go to the smaller
    relative step."""
    ok = [s for s in searches if s.result.best is not None]
    return max(ok, key=lambda s: (s.result.best.retain, -s.rel(s.result.best.lam)), default=None)


def strongest(searches: Sequence[LayerSearch]) -> tuple[LayerSearch, Trial] | None:
    """A fallback: the trial with the lowest forget score (then the best retain, then the
    smaller relative step), for a report that needs a row even when no layer passed."""
    return min(((s, t) for s in searches for t in s.result.trials),
               key=lambda st: (st[1].forget, -st[1].retain, st[0].rel(st[1].lam)), default=None)


def rank(rows: Sequence[dict], cfg: RankConfig,
         readable: Callable[[str], bool] | None = None) -> tuple[list[str], list[dict]]:
    """The layers to search, and the candidate rows annotated with their front level. Only the
    candidates the consumer reads (``readable``) are ranked."""
    cands = [r for r in rows if r["candidate"] and (readable is None or readable(r["name"]))]
    if not cands:
        raise DataError("no candidate layer to rank: every tensor is excluded (gradients.exclude) "
                        "or not read by the model the patch is for")
    cands = L.annotate(cands, cfg.signed, cfg.fronts)
    return L.select(cands, cfg.rule), cands


def layers_to_store(rows: Sequence[dict]) -> list[str]:
    """The forget gradients worth keeping after the gradient pass: every layer on the first
    ``MAX_FRONTS`` fronts under either alignment, plus the naive max-importance layer, so that a
    later ranking with any ``rank.*`` setting finds its layers without a new gradient pass."""
    cands = [dict(r) for r in rows if r["candidate"]]
    keep = {L.naive_choice(cands)}
    for signed in (False, True):
        keep |= set(rank(cands, RankConfig(signed, MAX_FRONTS, "front"))[0])
    return sorted(keep)


def search(model, grads: dict[str, torch.Tensor], layers: Sequence[str], scorer: Scorer,
           cfg: SearchConfig, fallback: Fallback | None = None, progress=lambda x, **k: x,
           score_base: bool = False) -> Slug:
    """Search a step for every layer in ``layers``; choose among them (see the module doc).
    ``score_base`` first scores the unedited model (``Slug.before``)."""
    start = time.time()
    params = dict(model.named_parameters())
    before = None
    if score_base:
        scorer.prepare(layers[0])
        before = scorer.score()
    searches = []
    for layer in progress(layers, desc="step search"):
        p, g = params[layer], grads[layer].to(params[layer].device)
        rho = float(p.detach().norm() / g.norm().clamp_min(1e-12))
        scorer.prepare(layer)  # caches under the base weights

        def evaluate(lam, p=p, g=g):
            with edited(p, g, lam):
                return scorer.score()

        searches.append(LayerSearch(layer, rho, search_step(evaluate, cfg.scale0 * rho,
                                                            cfg.target, cfg.max_evals)))
    chosen = choose(searches)
    if chosen is not None:
        picked, reached = (chosen, chosen.result.best), True
    else:
        picked, reached = (fallback(searches) if fallback else None) or (None, None), False
    return Slug(searches, *picked, reached, grads, before=before, time_s=time.time() - start)


def unlearn(model, forget, retain, scorer: Scorer, cfg: SearchConfig, rank_cfg: RankConfig, *,
            batch_size: int, exclude: Sequence[str], readable: Callable[[str], bool] | None = None,
            trainable: Callable[[str], bool] | None = None, fallback: Fallback | None = None,
            progress=lambda x, **k: x) -> Slug:
    """SLUG in one call: one gradient pass (only ``trainable`` tensors get gradients), the layer
    ranking among what the consumer reads, the step search. The gradients, rank and unlearn
    stages run the same three steps with their artifacts in between."""
    g = gradient_pass(model, forget, retain, batch_size, trainable)
    layers, ranked = rank(L.stats_table(model, g.forget, g.retain, exclude), rank_cfg, readable)
    res = search(model, g.forget, layers, scorer, cfg, fallback, progress)
    res.ranking, res.gradients = ranked, g
    return res
