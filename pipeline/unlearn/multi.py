"""Several concepts at once, through SLUG's own pieces (``pipeline.unlearn.slug``).

* ``sequential``: forget the concepts one after the other. Each concept's gradients are computed
  on the model with the earlier concepts' edits applied, and its layer and step are searched
  there (``slug.unlearn``, judged on every concept forgotten so far).
* ``joint``: one retain gradient pass, and one forget gradient pass per concept, all at the base
  weights. Each concept's layer and step are searched at the base, as if it were alone. Where
  several concepts chose the same layer, their summed step is scaled to the smallest common
  scale at which all of them still pass (a ``Bracket`` on the scale, the other layers' edits
  applied). A concept the others' edits leave unforgotten is then searched again with every
  other edit applied (``rounds``).

Under ``unlearn.selectivity: nullspace`` (the selective variant) every concept's step is
projected off the retained inputs of the layer it edits (``pipeline.unlearn.selective``) before
its search: ``joint`` projects every concept's gradients with one forward pass over the retain
pairs at the base; ``sequential`` projects each concept's on the model it is computed on.

Either way each concept's step is an ``Edit``; ``patches`` turns the edits into one ``Patch``
per concept, whose manifest names the model state it was computed on: the base (``joint``: the
patches compose by adding their differences) or the base plus the earlier patches
(``sequential``: applied in order). ``pipeline.unlearn.stack`` stores and applies them.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from ..concept import Concept
from ..datasets.pairs import PairData
from ..errors import ParamsError
from ..evaluate.zeroshot import topk_correct
from ..models.structure import state_dict_hash
from ..params import MULTI_STRATEGIES, GradientsParams, RankParams, UnlearnParams
from . import layers as L
from . import slug
from .gradients import head, mean_gradient
from .patch import Patch
from .trials import TrialScorer

STRATEGIES = MULTI_STRATEGIES


class _Remember:
    """A ``FeatureCache`` that keeps the last features it computed."""

    def __init__(self, cache):
        self.inner, self.last = cache, None

    def prepare(self, layer: str, direction: torch.Tensor | None = None) -> None:
        self.inner.prepare(layer, direction)

    def features(self, only=None):
        self.last = self.inner.features(only)
        return self.last


class ManyScorer(TrialScorer):
    """A ``TrialScorer`` for several concepts: every concept is left out of the retain labels,
    each concept's forget share is measured on its own forget images (``forget:<label>`` in the
    parts), and the forget score is the largest share, so a trial passes when every concept
    does."""

    def __init__(self, model, tokenizer, kinds, concepts: Sequence[Concept],
                 forgets: Sequence[PairData], retain_val: PairData, topk: int,
                 shortcut: bool = True):
        if not concepts or len(concepts) != len(forgets):
            raise ValueError("one forget set per concept, and at least one concept")
        joined = PairData(torch.cat([f.images for f in forgets]),
                          torch.cat([f.tokens for f in forgets]),
                          [c for f in forgets for c in f.captions], forgets[0].report)
        super().__init__(model, tokenizer, kinds, concepts[0], joined, retain_val, topk,
                         shortcut=shortcut)
        for c in concepts[1:]:
            c.check(kinds[c.kind][0])
            if c.kind in self.labels:
                self.labels[c.kind][self.labels[c.kind] == c.index] = -1
        self.labels = {k: v for k, v in self.labels.items() if (v >= 0).any()}
        self.targets = [(c.kind, c.index, c.label) for c in concepts]
        self.sizes = [len(f.images) for f in forgets]
        self.cache = _Remember(self.cache)

    def score(self, cosine: bool = False) -> tuple[float, float, dict]:
        _, retain, parts = super().score(cosine)
        f = self.cache.last
        shares = []
        for (kind, index, label), x in zip(self.targets, f["forget"].split(self.sizes)):
            target = torch.full((len(x),), index, dtype=torch.long)
            hit = topk_correct(x @ self._classifier(f, kind).T, target, self.topk)
            shares.append(float(hit.float().mean()))
            parts[f"forget:{label}"] = shares[-1]
        return max(shares), retain, parts


@dataclass(frozen=True)
class Request:
    """One concept to forget and its forget-search pairs."""
    concept: Concept
    forget: PairData


@dataclass
class Edit:
    """One concept's step: ``layer += lam * grad``."""
    layer: str
    grad: torch.Tensor
    lam: float
    rel_step: float
    reached: bool
    evaluations: int


@dataclass
class Result:
    strategy: str
    edits: dict[str, Edit]  # by concept label, in request order
    states: dict[str, str]  # by concept label: the hash of the model its edit was computed on
    final: tuple[float, float, dict]  # the scorer of every concept, every edit applied
    time_s: dict = field(default_factory=dict)  # gradients, search, total
    rounds: int = 1
    scaled: dict[str, float] = field(default_factory=dict)  # shared layer -> the common scale
    target: float = 0.0  # the stop rule's
    selectivity: str = "none"  # unlearn.selectivity of every concept's step

    @property
    def reached(self) -> bool:
        """Every concept's search reached the stop rule, and with every edit applied every
        concept still meets it."""
        return all(e.reached for e in self.edits.values()) and self.final[0] <= self.target


@contextlib.contextmanager
def applied(model, edits: Iterable[Edit]):
    """Every edit applied (steps on one layer add up); the original bytes restored after."""
    params = dict(model.named_parameters())
    with contextlib.ExitStack() as stack:
        for e in edits:
            stack.enter_context(slug.edited(params[e.layer], e.grad, e.lam))
        yield


def _edit(res: slug.Slug) -> Edit:
    return Edit(res.layer, res.grads[res.layer], res.lam, res.rel_step, res.reached,
                res.evaluations)


Scorers = Callable[[Sequence[Request]], "slug.Scorer"]


def sequential(model, requests: Sequence[Request], retain: PairData, scorers: Scorers,
               cfg: slug.SearchConfig, rank_cfg: slug.RankConfig, *, batch_size: int,
               exclude: Sequence[str], max_forget: int | None = None,
               readable: Callable[[str], bool] | None = None,
               selectivity: slug.Selectivity = slug.Selectivity(),
               progress=lambda x, **k: x) -> Result:
    """One concept after the other, each on the model with the earlier edits applied and judged
    with the earlier concepts whose search reached (one that could not be forgotten does not
    hold back the next); under ``selectivity`` each step projected on that model."""
    start, edits, states = time.time(), {}, {}
    with contextlib.ExitStack() as stack:
        for i, r in enumerate(progress(requests, desc="concepts")):
            states[r.concept.label] = state_dict_hash(model)
            judged = [q for q in requests[:i] if edits[q.concept.label].reached] + [r]
            res = slug.unlearn(model, r.forget, retain, scorers(judged), cfg, rank_cfg,
                               batch_size=batch_size, exclude=exclude, readable=readable,
                               fallback=slug.strongest, max_forget=max_forget,
                               selectivity=selectivity)
            edits[r.concept.label] = e = _edit(res)
            stack.enter_context(applied(model, [e]))
        final = scorers(requests).score()
    return Result("sequential", edits, states, final,
                  {"total": round(time.time() - start, 2)}, target=cfg.target,
                  selectivity=selectivity.mode)


def joint(model, requests: Sequence[Request], retain: PairData, scorers: Scorers,
          cfg: slug.SearchConfig, rank_cfg: slug.RankConfig, *, batch_size: int,
          exclude: Sequence[str], max_forget: int | None = None, rounds: int = 2,
          forget_grad: Callable[[Request], dict] | None = None,
          readable: Callable[[str], bool] | None = None,
          selectivity: slug.Selectivity = slug.Selectivity(),
          progress=lambda x, **k: x) -> Result:
    """Every gradient at the base weights (one retain pass; each concept's forget gradient from
    ``forget_grad`` when given, e.g. the ``concept_grads`` stage's, else computed here); each
    concept's search at the base; the shared layers' summed steps rescaled; then up to
    ``rounds - 1`` passes that search again, with every other edit applied, the concepts the
    others' edits leave unforgotten. See the module doc."""
    start = time.time()
    base = state_dict_hash(model)
    model.eval()
    g_r, _ = mean_gradient(model, retain, "retain", batch_size)
    grads, ranked = {}, {}
    for r in progress(requests, desc="forget gradients"):
        g_f = forget_grad(r) if forget_grad else \
            mean_gradient(model, head(r.forget, max_forget), "forget", batch_size)[0]
        layers, _ = slug.rank(L.stats_table(model, g_f, g_r, exclude), rank_cfg, readable)
        ranked[r.concept.label] = layers
        grads[r.concept.label] = {x: g_f[x] for x in layers}  # only what a search may use
        del g_f
    del g_r
    if selectivity.mode != "none":  # one forward pass over the retain pairs for every concept
        from .selective import projectors

        pj = projectors(model, sorted({x for ls in ranked.values() for x in ls}), retain,
                        selectivity.energy)
        for label in ranked:
            grads[label], ranked[label], _ = slug.selective(
                model, grads[label], ranked[label], retain, selectivity, pj)
    grad_s = time.time() - start
    edits: dict[str, Edit] = {}

    def search(r: Request, others: bool) -> None:  # with the other concepts' edits, or alone
        edits.pop(r.concept.label, None)
        with applied(model, edits.values() if others else []):
            res = slug.search(model, grads[r.concept.label], ranked[r.concept.label],
                              scorers([r]), cfg, fallback=slug.strongest)
        edits[r.concept.label] = _edit(res)

    for r in progress(requests, desc="searches at the base"):
        search(r, others=False)
    scaled = _rescale_shared(model, requests, edits, scorers, cfg)
    done = 1
    while done < rounds:
        with applied(model, edits.values()):
            parts = scorers(requests).score()[2]
        pending = [r for r in requests if parts[f"forget:{r.concept.label}"] > cfg.target]
        if not pending:
            break
        done += 1
        for r in progress(pending, desc=f"searches, round {done}"):
            search(r, others=True)
    edits = {r.concept.label: edits[r.concept.label] for r in requests}
    with applied(model, edits.values()):
        final = scorers(requests).score()
    return Result("joint", edits, {label: base for label in edits}, final,
                  {"gradients": round(grad_s, 2), "total": round(time.time() - start, 2)},
                  done, scaled, cfg.target, selectivity.mode)


def _rescale_shared(model, requests, edits: dict[str, Edit], scorers: Scorers,
                    cfg: slug.SearchConfig) -> dict[str, float]:
    """For every layer two or more concepts edit: the smallest common scale of their summed
    step at which all of them still pass (the other layers' edits applied); their steps are
    scaled by it in place."""
    params = dict(model.named_parameters())
    out = {}
    for layer in sorted({e.layer for e in edits.values()}):
        group = [r for r in requests if edits[r.concept.label].layer == layer]
        if len(group) < 2:
            continue
        mine = [edits[r.concept.label] for r in group]
        direction = sum(e.lam * e.grad for e in mine)
        others = [e for e in edits.values() if e.layer != layer]
        b = slug.Bracket(1.0, cfg.target, cfg.max_evals, cfg.rtol)
        with applied(model, others):
            scorer = scorers(group)
            scorer.prepare(layer, direction)
            while not b.done:
                with slug.edited(params[layer], direction, b.lam):
                    b.record(*scorer.score())
        if b.best is not None:
            out[layer] = b.best.lam
            for e in mine:
                e.lam *= b.best.lam
                e.rel_step *= b.best.lam
    return out


def patches(model, result: Result, requests: Sequence[Request], head_: Callable[[Request], dict]
            ) -> list[Patch]:
    """One ``Patch`` per concept, in order. ``joint``: each made at the base weights;
    ``sequential``: each on the base with the earlier patches applied (its manifest's
    ``base_model_sha256`` is that state's hash)."""
    out, params = [], dict(model.named_parameters())
    with contextlib.ExitStack() as stack:
        for r in requests:
            e = result.edits[r.concept.label]
            theta = params[e.layer].detach()  # the state it was made on (sequential: edited)
            out.append(Patch({e.layer: slug.step(theta, e.grad, e.lam)}, {
                **head_(r), "resolved": r.concept.to_dict(), "layers": [e.layer],
                "lambda": e.lam, "rel_step": e.rel_step,
                "base_model_sha256": result.states[r.concept.label],
                "search": {"reached": e.reached}, "selectivity": result.selectivity,
                "stack": {"strategy": result.strategy}}))
            if result.strategy == "sequential":
                stack.enter_context(applied(model, [e]))
    return out


def summary(res: Result) -> dict:
    """What a run found: per concept its edit, whether every concept still passes with every
    edit applied (on the search split), the repair rounds, the shared-layer scales, the times."""
    return {"strategy": res.strategy, "selectivity": res.selectivity, "reached": res.reached,
            "rounds": res.rounds,
            "shared_layer_scales": res.scaled,
            "search_final": {"forget": res.final[0], "retain": round(res.final[1], 4)},
            "time_s": dict(res.time_s),
            "concepts": {label: {"layer": e.layer, "rel_step": round(e.rel_step, 4),
                                 "reached": e.reached, "evaluations": e.evaluations}
                         for label, e in res.edits.items()}}


def concept_of(patch: Patch) -> Concept:
    """The concept a ``patches`` patch forgets, as it was resolved."""
    return Concept.from_dict(patch.manifest["resolved"])


def record(res: Result, before: dict, after: dict, times: dict) -> dict:
    """The run's metrics: ``summary``, and per concept its held-out forget before and after; the
    retained identities, ImageNet and the other kinds before and after; the times."""
    out = summary(res)
    out["time_s"].update(times)
    for label, c in out["concepts"].items():
        c.update(before=before["concepts"][label], after=after["concepts"][label])
    out["retained"] = {k: {"before": before[k], "after": after[k]}
                       for k in before if k != "concepts"}
    return out


def load_requests(sets_dir: str | Path, preprocess, tokenizer
                  ) -> tuple[list[Request], PairData, PairData]:
    """A ``build_many`` folder's requests (each concept and its forget-search pairs), retain
    and retain-validation pairs."""
    from ..sets.build import load_split
    from ..sets.many import concept_dir, read_concepts

    reqs = [Request(c, load_split(concept_dir(Path(sets_dir) / "concepts", c.label),
                                  "forget_search", preprocess,
                                  tokenizer)) for c in read_concepts(sets_dir)]
    retain, val = (load_split(sets_dir, x, preprocess, tokenizer) for x in ("retain", "retain_val"))
    return reqs, retain, val


def clip_scorers(model, tokenizer, kinds, retain_val: PairData, u: UnlearnParams) -> Scorers:
    """The reference's judge for a set of concepts: CLIP zero-shot on their forget-search images
    and on the retain-validation pairs (``ManyScorer``)."""
    return lambda rs: ManyScorer(model, tokenizer, kinds, [r.concept for r in rs],
                                 [r.forget for r in rs], retain_val, u.topk, u.shortcut)


def forget(strategy: str, model, reqs: Sequence[Request], retain: PairData, scorers: Scorers,
           u: UnlearnParams, rank: RankParams, g: GradientsParams, rounds: int = 2,
           progress=lambda x, **k: x, forget_grad: Callable[[Request], dict] | None = None,
           readable: Callable[[str], bool] | None = None, target: float | None = None,
           selectivity: str | None = None) -> Result:
    """``joint`` or ``sequential`` with the ``unlearn`` (``u``), ``rank`` and ``gradients``
    (``g``) params groups: the stop rule, the ranking and the gradient pass in force. ``scorers``
    judges a set of requests (``clip_scorers``, or generations for a diffusion pipeline);
    ``readable`` limits the layers to those the patched model reads; ``target`` replaces
    ``u.target`` for a judge with its own (``sd.search.target``). Every step is taken as
    ``selectivity`` (default ``u.selectivity``) says: the paper's, or the selective variant
    (``nullspace``, with ``u.energy``)."""
    if strategy not in STRATEGIES:
        raise ParamsError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    cfg = slug.SearchConfig(u.target if target is None else target, u.max_evals, u.scale0,
                            u.rtol, u.prune)
    rank_cfg = slug.RankConfig(rank.alignment == "signed", rank.fronts, rank.rule)
    kw = {"rounds": rounds, "forget_grad": forget_grad} if strategy == "joint" else {}
    return (joint if strategy == "joint" else sequential)(
        model, reqs, retain, scorers, cfg, rank_cfg, batch_size=g.batch_size, exclude=g.exclude,
        max_forget=g.max_forget, readable=readable, progress=progress,
        selectivity=slug.Selectivity(selectivity or u.selectivity, u.energy), **kw)


def measure(model, tokenizer, x, sets_dir: str | Path, stack_dir: str | Path, preprocess
            ) -> tuple[dict, dict, float]:
    """``held_out`` of the concepts before and after the stack saved in ``stack_dir`` (loaded
    back, so what ships is what is measured); the seconds the ``after`` pass took."""
    from ..evaluate.stream import TarPairs
    from ..evaluate.unlearning import held_out
    from ..sets.build import require_split
    from ..sets.many import concept_dir, read_concepts
    from . import patch as patch_mod
    from . import stack as S

    concepts = read_concepts(sets_dir)
    tests = [TarPairs(require_split(concept_dir(Path(sets_dir) / "concepts", c.label),
                                    "forget_test"), preprocess) for c in concepts]
    before = held_out(model, tokenizer, x, concepts, tests)[0]
    start = time.time()
    originals = S.apply(model, S.load(stack_dir))
    try:
        after = held_out(model, tokenizer, x, concepts, tests)[0]
    finally:
        patch_mod.revert(model, originals)
    return before, after, time.time() - start


GRADS = "forget_grads.safetensors"


def grads_dir(root: str | Path, name: str) -> Path:
    """Where the ``concept_grads`` stage writes one concept's forget gradient."""
    return Path(root) / name


def save_forget_grad(folder: str | Path, model, forget: PairData, batch_size: int,
                     max_forget: int | None, concept: str) -> float:
    """One concept's forget gradient at the base weights (every tensor, as ``joint`` ranks
    them) with the model's hash, as one folder; returns the loss."""
    from ..io import atomic_dir, save_tensors, write_json

    model.eval()
    g, loss = mean_gradient(model, head(forget, max_forget), "forget", batch_size)
    with atomic_dir(folder) as tmp:
        save_tensors(tmp / GRADS, g)
        write_json(tmp / "manifest.json", {
            "concept": concept, "model_sha256": state_dict_hash(model), "forget_loss": loss,
            "n_forget": len(head(forget, max_forget).images)})
    return loss


def load_forget_grad(folder: str | Path, model_sha256: str) -> dict[str, torch.Tensor]:
    """A ``save_forget_grad`` folder, refused when it was computed on another model."""
    from safetensors.torch import load_file

    from ..errors import ModelError

    path = Path(folder)
    if not (path / GRADS).exists():
        raise ModelError(f"{path / GRADS} is missing; run the concept_grads stage")
    have = json.loads((path / "manifest.json").read_text())["model_sha256"]
    if have != model_sha256:
        raise ModelError(f"{path} holds a gradient of model {have[:12]}..., not of the model "
                         f"given ({model_sha256[:12]}...); run concept_grads again")
    return load_file(str(path / GRADS))


def requested(names: Sequence[str], sets_root: str | Path, retain_dir: str | Path, preprocess,
              tokenizer) -> tuple[list[Request], PairData, PairData]:
    """The main pipeline's ``concepts``: each one's resolution and forget-search pairs (the
    ``concept_sets`` stage's folder), and the shared retain and retain-validation pairs (the
    ``multi_retain`` stage's)."""
    from ..concept import Concept
    from ..errors import DataError
    from ..sets.build import MANIFEST, load_split
    from ..sets.many import concept_dir

    reqs = []
    for name in names:
        folder = concept_dir(sets_root, name)
        if not (folder / MANIFEST).exists():
            raise DataError(f"{folder / MANIFEST} is missing; run the concept_sets stage")
        concept = Concept.from_dict(json.loads((folder / MANIFEST).read_text())["concept"])
        reqs.append(Request(concept, load_split(folder, "forget_search", preprocess, tokenizer)))
    retain, val = (load_split(retain_dir, x, preprocess, tokenizer)
                   for x in ("retain", "retain_val"))
    return reqs, retain, val
