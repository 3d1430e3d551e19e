"""The unlearn step of the CLIP pipeline: the step search on the layers the ranking selected, with
the gradients stored by the gradient pass, judged on the search data; the naive max-importance
layer searched beside them (for the side-by-side, never eligible); the checks the shipped patch
must pass; the search trace.

Where no layer reaches the criterion, the strongest trial (lowest forget score, then the best
retain score) is what the patch holds, flagged ``reached: false`` in its manifest and metrics, as
the canvas benchmark does: the held-out numbers still get measured, and ``slug export`` refuses
such a patch unless told otherwise. (The reference never stops on a miss either: it runs its
evaluations and logs every one.)"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..errors import DataError, NumericalError
from ..io import write_json
from ..models.structure import state_dict_hash
from . import slug

GRADS = "forget_grads.safetensors"
LAYERS = "layers.json"
SELECTION = "selection.json"
TRACE = "search.json"


def save_gradients(folder: str | Path, g, rows: list[dict], keep: list[str], **manifest) -> None:
    """The gradient pass's folder, at once: the forget gradients of ``keep`` (safetensors), the
    layer table ``rows``, and a manifest (the sign convention, the losses and sizes of ``g``, a
    ``reliability.SplitGradients``, and ``manifest``)."""
    from ..io import atomic_dir, save_tensors

    with atomic_dir(folder) as tmp:
        save_tensors(tmp / GRADS, {k: g.forget[k] for k in keep})
        write_json(tmp / LAYERS, rows)
        write_json(tmp / "manifest.json", {
            "sign": "stored = grad of L_f = mean(1 - cos); unlearn with theta + lambda * grad, "
                    "lambda > 0", "forget_loss": g.forget_loss, "retain_loss": g.retain_loss,
            "n_forget": g.n_forget, "n_retain": g.n_retain, "halves": g.describe(),
            "stored_layers": keep, **manifest})


def read_layers(grads_dir: str | Path) -> list[dict]:
    path = Path(grads_dir) / LAYERS
    if not path.exists():
        raise DataError(f"{path} is missing; run the gradient pass (params: gradients.out)")
    return json.loads(path.read_text())


def read_grads(grads_dir: str | Path) -> dict[str, torch.Tensor]:
    path = Path(grads_dir) / GRADS
    if not path.exists():
        raise DataError(f"{path} is missing; run the gradient pass (params: gradients.out)")
    return load_file(str(path))


def read_selection(rank_dir: str | Path) -> dict:
    path = Path(rank_dir) / SELECTION
    if not path.exists():
        raise DataError(f"{path} is missing; rank the layers first (params: rank.out)")
    return json.loads(path.read_text())


def read_trace(trace_dir: str | Path) -> dict:
    path = Path(trace_dir) / TRACE
    if not path.exists():
        raise DataError(f"{path} is missing; run the step search first (params: unlearn.trace)")
    return json.loads(path.read_text())


@dataclass
class Search:
    result: slug.Slug
    naive: slug.LayerSearch  # the naive layer's search (one of result.searches if selected)
    before: tuple[float, float, dict]  # the scorer's (forget, retain, extra) at the base weights
    forget_cosine_after: float | None
    time_s: float  # the search of the selected layers (the naive layer's search not included)


def search_selected(model, grads: dict[str, torch.Tensor], selection: dict, scorer,
                    cfg: slug.SearchConfig, progress=lambda x, **k: x,
                    selectivity: slug.Selectivity = slug.Selectivity(), retain=None) -> Search:
    """The search over the selected layers (and the naive layer's, for the trace); under
    ``selectivity`` their steps projected on ``retain``'s inputs (``slug.selective``; the naive
    layer keeps its plain gradient where it has no projection)."""
    layers = [x for x in selection["selected"] if x in grads]
    if not layers:
        raise DataError("no selected layer has a stored gradient; run the gradient pass and the "
                        "ranking again")
    naive = selection["naive_max_importance"]
    projected, layers, proj = slug.selective(model, grads, dict.fromkeys(layers + [naive]),
                                             retain, selectivity)
    layers = [x for x in layers if x != naive or naive in selection["selected"]]
    if not layers:
        raise DataError(f"unlearn.selectivity {selectivity.mode}: none of the selected layers "
                        f"has a projection ({', '.join(proj.skipped)})")
    grads = projected
    base_hash = state_dict_hash(model)
    start = time.time()
    scorer.prepare(layers[0])
    before = scorer.score(cosine=True)
    res = slug.search(model, grads, layers, scorer, cfg, fallback=slug.strongest,
                      progress=progress)
    elapsed = time.time() - start
    naive_search = next((s for s in res.searches if s.layer == naive and not s.result.pruned),
                        None) or slug.search(model, grads, [naive], scorer, cfg).searches[0]
    if state_dict_hash(model) != base_hash:
        raise NumericalError("a trial leaked into the base weights")
    cosine = None
    if res.trial is not None:
        scorer.prepare(res.layer)
        with slug.edited(dict(model.named_parameters())[res.layer], grads[res.layer], res.lam):
            cosine = scorer.score(cosine=True)[2]["forget_cosine"]
        if not cosine < before[2]["forget_cosine"]:
            raise NumericalError(f"the step on {res.layer} did not lower the forget pairs' cosine "
                                 f"({before[2]['forget_cosine']:.4f} -> {cosine:.4f}); the stored "
                                 f"gradient has the wrong sign")
    res.projection = proj
    return Search(res, naive_search, before, cosine, elapsed)


def line(s: Search) -> str:
    """The log line of a search."""
    res, (f0, r0, _) = s.result, s.before
    return (f"unlearn: {res.layer} at lambda {res.lam:.4g} ({res.rel_step:.3f} x ||theta||); "
            f"search forget {f0:.3f} -> {res.trial.forget:.3f}, retain {r0:.3f} -> "
            f"{res.trial.retain:.3f}; {s.time_s:.1f}s")


def missed(s: Search, topk: int, target: float, max_evals: int) -> str:
    """The warning line of a search that no layer passed."""
    res = s.result
    return (f"warning: no layer reached forget top-{topk} <= {target} on the search split within "
            f"{max_evals} evaluations; the patch holds the strongest trial ({res.layer} at "
            f"{res.rel_step:.3g} x ||theta||, forget {res.trial.forget:.4f}), flagged reached: "
            f"false; `slug export` refuses it without --allow-unreached")


def trace_rows(s: Search) -> list[dict]:
    """One row per trial (the naive layer's too, flagged); ``chosen`` marks the patch's trial
    (the strongest one where no layer reached the criterion)."""
    rows = []
    extra = [] if s.naive in s.result.searches else [s.naive]
    res = s.result
    for ls in s.result.searches + extra:
        for i, t in enumerate(ls.result.trials):
            chosen = bool(res.trial is not None and ls.layer == res.layer and t is res.trial)
            rows.append({"layer": ls.layer, "eval": i + 1, "lambda": t.lam,
                         "rel_step": ls.rel(t.lam), "forget": t.forget, "retain": t.retain,
                         "passed": t.passed, "naive": ls is s.naive,
                         "chosen": chosen, **t.extra})
    return rows


def summary(ls: slug.LayerSearch) -> dict:
    b = ls.result.best
    return {"layer": ls.layer, "reached_target": b is not None,
            "lambda": b.lam if b else None, "rel_step": ls.rel(b.lam) if b else None,
            "forget": b.forget if b else None, "retain": b.retain if b else None,
            "evaluations": len(ls.result.trials), "pruned": ls.result.pruned,
            "retain_monotone": ls.monotone}


def metrics(s: Search, concept, patch, model) -> dict:
    res, (f0, r0, x0) = s.result, s.before
    return {
        "concept": concept.label, "kind": concept.kind, "reached_target": res.reached,
        "layer": res.layer, "lambda": res.lam, "rel_step": res.rel_step,
        "search": {"forget_before": f0, "retain_before": r0, "forget_after": res.trial.forget,
                   "retain_after": res.trial.retain, "forget_cosine_before": x0["forget_cosine"],
                   "forget_cosine_after": s.forget_cosine_after},
        "layers": [summary(x) for x in res.searches], "naive": summary(s.naive),
        "patch_fraction": patch.numel / sum(x.numel() for x in model.parameters()),
        "time_s": round(s.time_s, 2), "evaluations": res.evaluations,
        "selectivity": res.selectivity,
    }



def write_trace(folder: str | Path, s: Search) -> None:
    """What later steps read of the search: the chosen layer and step (``None`` where no layer
    reached the criterion), the naive layer's."""
    write_json(Path(folder) / TRACE, {
        "chosen": summary(s.result.chosen) if s.result.reached else None,
        "naive": summary(s.naive),
        "layers": [summary(x) for x in s.result.searches]})
