"""Stage unlearn: a step searched for every selected layer on the search data; the best layer's
patch (tensor + manifest), the trace and its plot. Else the strongest trial, flagged (a warning)."""

from __future__ import annotations

import sys

import torch

from pipeline.entry import metrics_path, plots_dir, run
from pipeline.evaluate.sets import scorer_kinds, standard_sets
from pipeline.io import sha256_file, write_csv, write_json
from pipeline.models.factory import from_params
from pipeline.models.structure import state_dict_hash
from pipeline.params import Params
from pipeline.progress import progress
from pipeline.report.figures import plot_search
from pipeline.sets.build import load_split, read_concept, split_hashes
from pipeline.unlearn import patch as patch_mod
from pipeline.unlearn import slug
from pipeline.unlearn import workflow as W
from pipeline.unlearn.trials import TrialScorer


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    bundle, u, sets = from_params(p.model, p.device), p.unlearn, p.sets.out
    concept, d = read_concept(sets), p.data
    kinds = scorer_kinds(standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas,
                                     p.eval.templates))
    grads = W.read_grads(p.gradients.out)
    sel = slug.Selectivity(u.selectivity, u.energy)  # nullspace: projected on the retain split
    forget, retain_val, retain = (load_split(sets, x, bundle.preprocess, bundle.tokenizer)
                                  if x != "retain" or sel.mode != "none" else None
                                  for x in ("forget_search", "retain_val", "retain"))
    scorer = TrialScorer(bundle.model, bundle.tokenizer, kinds, concept, forget, retain_val, u.topk,
                         shortcut=u.shortcut)
    cfg = slug.SearchConfig(u.target, u.max_evals, u.scale0, u.rtol, u.prune)
    s = W.search_selected(bundle.model, grads, W.read_selection(p.rank.out), scorer, cfg, progress,
                          sel, retain)
    res, rows, plots = s.result, W.trace_rows(s), plots_dir("unlearn")
    write_csv(plots / "search.csv", rows)
    plot_search(rows, plots / "search.png", u.target, res.layer)
    if not res.reached:
        print(W.missed(s, u.topk, u.target, u.max_evals), file=sys.stderr)
    patch = res.patch(bundle.model, {"concept": concept.label, "kind": concept.kind},
                      base_model=bundle.describe(), base_model_sha256=state_dict_hash(bundle.model),
                      search={"target": u.target, "topk": u.topk, "reached": res.reached,
                              "forget": res.trial.forget, "retain": res.trial.retain},
                      data=split_hashes(sets, ("forget_search", "retain_val")),
                      gradients_sha256=sha256_file(f"{p.gradients.out}/{W.GRADS}"), seed=p.seed,
                      selectivity=res.selectivity)
    write_json(metrics_path("unlearn"), {**W.metrics(s, concept, patch, bundle.model),
                                         "patch_fingerprint": patch_mod.save(patch, u.out)})
    W.write_trace(u.trace, s)
    print(W.line(s))


if __name__ == "__main__":
    run(main)
