"""Stage unlearn: search a step for every selected layer on the search data, keep the best layer,
write the patch (edited tensor + manifest), the search trace and its plot."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from pipeline.datasets.pairs import load_pairs
from pipeline.datasets.shards import Shard
from pipeline.errors import DataError, NumericalError
from pipeline.io import sha256_file, write_json, write_text
from pipeline.models import build, state_dict_hash
from pipeline.params import Params
from pipeline.progress import progress
from pipeline.report.figures import plot_search
from pipeline.unlearn import patch as patch_mod
from pipeline.unlearn.slug import edited, run_slug
from pipeline.unlearn.trials import TrialScorer

from ._common import kinds_and_target, run

TRACE = Path("plots/unlearn/search.csv")
FIGURE = Path("plots/unlearn/search.png")
METRICS = Path("metrics/unlearn.json")


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    m = p.model
    bundle = build(m.name, m.pretrained, m.quick_gelu, m.precision, p.device)
    model = bundle.model
    kinds, kind, concept_idx = kinds_and_target(p)
    grads_dir = Path(p.gradients.out)
    grads = load_file(str(grads_dir / "forget_grads.safetensors"))
    rank = json.loads(Path("metrics/rank.json").read_text())
    layers = [l for l in rank["selected"] if l in grads]
    naive = rank["naive_max_importance"]
    if not layers:
        raise DataError("no selected layer has a stored gradient; rerun gradients and rank")
    sets = Path(p.sets.out)
    forget = load_pairs([Shard(sets / "forget_search.tar")], bundle.preprocess, bundle.tokenizer)
    retain_val = load_pairs([Shard(sets / "retain_val.tar")], bundle.preprocess, bundle.tokenizer)
    base_hash = state_dict_hash(model)

    start = time.time()
    scorer = TrialScorer(model, bundle.tokenizer, kinds, kind, concept_idx, forget, retain_val,
                         topk=p.unlearn.topk)
    scorer.prepare(layers[0])
    base_forget, base_retain, base_extra = scorer.score(cosine=True)
    u = p.unlearn
    searches, chosen = run_slug(model, grads, layers, scorer, u.target, u.max_evals, u.scale0,
                                progress=progress)
    elapsed = time.time() - start
    naive_search = None
    if naive not in layers:  # searched for the side-by-side only; never eligible
        naive_search = run_slug(model, grads, [naive], scorer, u.target, u.max_evals, u.scale0)[0][0]
    assert state_dict_hash(model) == base_hash, "a trial leaked into the base weights"

    rows = []
    for s in searches + ([naive_search] if naive_search else []):
        for i, t in enumerate(s.result.trials):
            rows.append({"layer": s.layer, "eval": i + 1, "lambda": t.lam, "rel_step": t.lam / s.rho,
                         "forget": t.forget, "retain": t.retain, "passed": t.passed,
                         "naive": s.layer == naive, **t.extra})
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    write_text(TRACE, buf.getvalue())
    plot_search(rows, FIGURE, u.target, chosen.layer if chosen else None)

    def summary(s):
        if s is None:
            return None
        b = s.result.best
        return {"layer": s.layer, "reached_target": b is not None,
                "lambda": b.lam if b else None, "rel_step": b.lam / s.rho if b else None,
                "forget": b.forget if b else None, "retain": b.retain if b else None,
                "evaluations": len(s.result.trials)}

    if chosen is None:  # no patch and no metrics; the trace stays for the diagnosis
        raise DataError(f"no layer reached forget <= {u.target} within {u.max_evals} evaluations; "
                        f"raise unlearn.max_evals or unlearn.target (trace in {TRACE})")
    best = chosen.result.best
    scorer.prepare(chosen.layer)
    with edited(dict(model.named_parameters())[chosen.layer], grads[chosen.layer], best.lam):
        best.extra["forget_cosine"] = scorer.score(cosine=True)[2]["forget_cosine"]
    if not best.extra["forget_cosine"] < base_extra["forget_cosine"]:
        raise NumericalError(f"the step on {chosen.layer} did not lower the forget pairs' cosine "
                             f"({base_extra['forget_cosine']:.4f} -> {best.extra['forget_cosine']:.4f});"
                             f" the stored gradient has the wrong sign")
    new = model.state_dict()[chosen.layer] + best.lam * grads[chosen.layer]
    patch = patch_mod.Patch({chosen.layer: new}, {
        "concept": p.concept, "kind": kind, "layers": [chosen.layer], "lambda": best.lam,
        "rel_step": best.lam / chosen.rho, "base_model": bundle.describe(),
        "base_model_sha256": base_hash, "search": {"target": u.target, "topk": u.topk,
                                                   "forget": best.forget, "retain": best.retain},
        "data": {f: sha256_file(sets / f) for f in ("forget_search.tar", "retain_val.tar")},
        "gradients_sha256": sha256_file(grads_dir / "forget_grads.safetensors"), "seed": p.seed,
    })
    patch_mod.save(patch, u.out)
    n_params = sum(x.numel() for x in model.parameters())
    write_json(METRICS, {
        "concept": p.concept, "kind": kind, "reached_target": True, "layer": chosen.layer,
        "lambda": best.lam, "rel_step": best.lam / chosen.rho,
        "search": {"forget_before": base_forget, "retain_before": base_retain,
                   "forget_after": best.forget, "retain_after": best.retain,
                   "forget_cosine_before": base_extra["forget_cosine"],
                   "forget_cosine_after": best.extra["forget_cosine"]},
        "layers": [summary(s) for s in searches], "naive": summary(naive_search) or
        next(summary(s) for s in searches if s.layer == naive),
        "patch_fraction": patch.numel / n_params, "time_s": round(elapsed, 2),
        "evaluations": sum(len(s.result.trials) for s in searches),
    })
    print(f"unlearn: {chosen.layer} at lambda {best.lam:.4g} ({best.lam / chosen.rho:.3f} x ||theta||"
          f"); search forget {base_forget:.3f} -> {best.forget:.3f}, retain {base_retain:.3f} -> "
          f"{best.retain:.3f}; {elapsed:.1f}s")


if __name__ == "__main__":
    run(main)
