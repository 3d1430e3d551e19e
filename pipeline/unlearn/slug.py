"""SLUG's one entry point: rank the layers, search a step on each, return the result.

Step: ``theta_l <- theta_l0 + lambda * g_f,l`` with ``lambda > 0``, where ``g_f`` is the stored
gradient of ``L_f = mean(1 - cos)``: ascent on ``L_f``, so the forget pairs' cosine falls.
``edited`` applies it for a trial and ``Slug.tensors`` for the patch; nothing else does.

Search (per layer): start at ``lambda_0 = scale0 * ||theta|| / ||g||`` (an update of 10 % of the
layer's norm by default), double until the forget score reaches the target, then bisect between
the largest failing and the smallest passing step; at most ``max_evals`` evaluations, fewer once
the bracket is tight (``hi / lo <= 1 + rtol``; ``rtol = 0`` spends them all). A layer's result is
its smallest passing step (the gentlest edit that forgets). Among the layers that pass, the one
with the best retain score wins (ties: the smaller relative step). When none passes, an optional
``fallback`` hook may still name a trial (the canvas benchmark reports the strongest one, flagged
as not reached).

Pruning (``prune``): the retain score falls as the step grows, so the retain score of a layer's
failing trial bounds every step of that layer still to be found (each lies above it). The layers
are searched best-first, one trial at a time on the layer with the highest bound, and a layer
whose bound is below the retain score another layer already reached stops: it cannot win. Under
that monotone response the choice is the exhaustive search's; each layer records whether its
trials were monotone (``LayerSearch.monotone``), so a violation is visible.

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
    """Scores the model as it is now. ``prepare(layer, direction)`` is called under the base
    weights before the trials of ``layer``, whose trials add multiples of ``direction`` to it (a
    scorer may cache what an edit of that layer cannot change, and the direction's effect);
    ``score()`` returns ``(forget, retain, extra)``: lower forget is more forgotten, higher retain
    is better, ``extra`` holds any diagnostics to record with the trial."""

    def prepare(self, layer: str, direction: torch.Tensor | None = None) -> None: ...

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
    pruned: bool = False  # stopped early: its bound fell below another layer's retain score


class Bracket:
    """One layer's step search as a state machine: ``lam`` is the next step to try; ``record``
    a trial of it. Every failing step stays below every passing one."""

    def __init__(self, lam0: float, target: float, max_evals: int, rtol: float = 0.0):
        if lam0 <= 0:
            raise ValueError("the initial step must be positive")
        self.target, self.max_evals, self.rtol = target, max_evals, rtol
        self.trials: list[Trial] = []
        self.lam, self.lo, self.hi = lam0, 0.0, None  # lo: largest failing, hi: smallest passing
        self.pruned = False

    def record(self, forget: float, retain: float, extra: dict) -> Trial:
        t = Trial(self.lam, forget, retain, forget <= self.target, extra)
        self.trials.append(t)
        if t.passed:
            self.hi = t.lam
        else:
            self.lo = t.lam
        self.lam = t.lam * 2 if self.hi is None else 0.5 * (self.lo + self.hi)
        return t

    @property
    def tight(self) -> bool:
        return self.hi is not None and self.lo > 0 and self.hi <= (1 + self.rtol) * self.lo

    @property
    def done(self) -> bool:
        return self.pruned or self.tight or len(self.trials) >= self.max_evals

    @property
    def best(self) -> Trial | None:
        return min((t for t in self.trials if t.passed), key=lambda t: t.lam, default=None)

    @property
    def bound(self) -> float:
        """An upper bound on the retain score of any passing step still to be found (under a
        retain score that falls as the step grows)."""
        return min((t.retain for t in self.trials if not t.passed), default=float("inf"))

    def result(self) -> "SearchResult":
        return SearchResult(self.trials, self.best, self.pruned)


def search_step(evaluate: Callable[[float], tuple[float, float, dict]], lam0: float,
                target: float, max_evals: int, rtol: float = 0.0) -> "SearchResult":
    """Bracket by doubling, then bisect; ``evaluate(lam) -> (forget, retain, extra)``.

    ``forget`` must fall as ``lam`` grows for the bracket to be meaningful (monotone response).
    """
    b = Bracket(lam0, target, max_evals, rtol)
    while not b.done:
        b.record(*evaluate(b.lam))
    return b.result()


def monotone(trials: Sequence[Trial]) -> bool:
    """Whether the retain score does not rise as the step grows, over these trials."""
    r = [t.retain for t in sorted(trials, key=lambda t: t.lam)]
    return all(a >= b for a, b in zip(r, r[1:]))


@dataclass
class LayerSearch:
    layer: str
    rho: float  # ||theta|| / ||g||: lambda / rho is the update's norm relative to the layer's
    result: SearchResult

    def rel(self, lam: float) -> float:
        return lam / self.rho

    @property
    def monotone(self) -> bool:
        return monotone(self.result.trials)


@dataclass(frozen=True)
class SearchConfig:
    target: float  # a trial passes when its forget score is <= target
    max_evals: int  # per layer
    scale0: float  # the first step's norm relative to the layer's
    rtol: float = 0.0  # stop bisecting once hi / lo <= 1 + rtol (0: spend max_evals)
    prune: bool = False  # best-first over layers; stop the layers that cannot win

@dataclass(frozen=True)
class Selectivity:
    """``unlearn.selectivity``: the step as the paper takes it (``none``) or kept off the inputs
    the retained data feed the edited layer (``nullspace``, ``pipeline.unlearn.selective``,
    keeping the top directions that hold ``energy`` of their second moment)."""
    mode: str = "none"
    energy: float = 0.99

    @property
    def method(self) -> str:
        """The method's name in tables: ``slug`` (the paper's step) or ``slug_<mode>``."""
        return "slug" if self.mode == "none" else f"slug_{self.mode}"


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
    projection: object | None = None  # selective.Projection, when the step was projected

    @property
    def selectivity(self) -> dict | None:
        """How the chosen step was projected (``None``: the paper's step)."""
        return None if self.projection is None else self.projection.summary(self.layer)

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


def _prune(br: dict[str, Bracket]) -> None:
    """Stop every layer whose bound is below the retain score another layer has reached (a
    layer's reached score only rises as its bracket narrows, its bound only falls)."""
    reached = sorted(((b.best.retain, x) for x, b in br.items() if b.best is not None),
                     reverse=True)
    for x, b in br.items():
        other = next((r for r, y in reached if y != x), None)
        if not b.done and other is not None and b.bound < other:
            b.pruned = True


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
    params = {x: params[x] for x in layers}
    gs = {x: grads[x].to(params[x].device) for x in layers}
    rho = {x: float(params[x].detach().norm() / gs[x].norm().clamp_min(1e-12)) for x in layers}
    br = {x: Bracket(cfg.scale0 * rho[x], cfg.target, cfg.max_evals, cfg.rtol) for x in layers}
    current = None
    for _ in progress(range(len(layers) * cfg.max_evals), desc="step search"):  # a bound
        if cfg.prune:
            _prune(br)
        active = [x for x in layers if not br[x].done]
        if not active:
            break
        # best-first when pruning (the highest bound; ties: the given order), else layer by layer
        layer = max(active, key=lambda x: br[x].bound) if cfg.prune else active[0]
        if layer != current:
            scorer.prepare(layer, gs[layer])  # caches under the base weights
            current = layer
        with edited(params[layer], gs[layer], br[layer].lam):
            br[layer].record(*scorer.score())
    searches = [LayerSearch(x, rho[x], br[x].result()) for x in layers]
    chosen = choose(searches)
    if chosen is not None:
        picked, reached = (chosen, chosen.result.best), True
    else:
        picked, reached = (fallback(searches) if fallback else None) or (None, None), False
    return Slug(searches, *picked, reached, grads, before=before, time_s=time.time() - start)


def selective(model, grads: dict[str, torch.Tensor], layers: Sequence[str], data,
              sel: Selectivity, projectors=None
              ) -> tuple[dict[str, torch.Tensor], list[str], object | None]:
    """The forget gradients and layers the search takes under ``sel``: unchanged for ``none``;
    for ``nullspace``, each layer's gradient projected off its inputs from ``data`` (a
    ``PairData``: what the retain gradient was computed on, or a part of it), the layers without
    a projection left out. ``projectors`` (``selective.projectors`` of ``data``, covering
    ``layers``) saves the forward pass when several gradients are projected on the same data."""
    if sel.mode == "none":
        return grads, list(layers), None
    from . import selective as S

    pj = projectors or S.projectors(model, layers, data, sel.energy)
    proj = pj.project({x: grads[x] for x in layers})
    kept = [x for x in layers if x in proj.steps]
    if not kept:
        raise DataError(f"unlearn.selectivity {sel.mode}: none of the ranked layers has a "
                        f"projection ({', '.join(proj.skipped)})")
    return {**grads, **proj.steps}, kept, proj


def unlearn(model, forget, retain, scorer: Scorer, cfg: SearchConfig, rank_cfg: RankConfig, *,
            batch_size: int, exclude: Sequence[str], readable: Callable[[str], bool] | None = None,
            trainable: Callable[[str], bool] | None = None, fallback: Fallback | None = None,
            max_forget: int | None = None, selectivity: Selectivity = Selectivity(),
            projection_set=None, progress=lambda x, **k: x) -> Slug:
    """SLUG in one call: one gradient pass (only ``trainable`` tensors get gradients), the layer
    ranking among what the consumer reads, the step search. The gradients, rank and unlearn
    stages run the same three steps with their artifacts in between. Under ``selectivity`` the
    step is projected off the retained inputs of ``projection_set`` (default: ``retain``)."""
    g = gradient_pass(model, forget, retain, batch_size, trainable, max_forget)
    layers, ranked = rank(L.stats_table(model, g.forget, g.retain, exclude), rank_cfg, readable)
    grads, layers, proj = selective(model, g.forget, layers,
                                    retain if projection_set is None else projection_set,
                                    selectivity)
    res = search(model, grads, layers, scorer, cfg, fallback, progress)
    res.ranking, res.gradients, res.projection = ranked, g, proj
    return res
