"""Benchmark: the iterative baselines' learning rates under the search criterion in force.

For each iterative method and each learning rate of a grid, one run from the base weights with the
compare stage's settings and stop rule (forget top-k on the forget-*search* split <= target, judged
by the same scorer); recorded: whether and when it reached the criterion and the *search-split*
retain score at the stop. The committed ``baselines.lr`` is, per method, the rate that reaches the
criterion with the best search-split retain score (no held-out number is read here). Run after
`dvc repro unlearn`:

    python -m bench.baseline_lr            # writes bench/baseline_lr.json
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from pipeline import params as params_mod
from pipeline.evaluate.sets import scorer_kinds, standard_sets
from pipeline.models.factory import from_params
from pipeline.sets.build import load_split, read_concept
from pipeline.unlearn import compare as C
from pipeline.unlearn.baselines import BaselineData, StopRule, run_method
from pipeline.unlearn.trials import TrialScorer

OUT = Path("bench/baseline_lr.json")
GRID = (3e-5, 1e-4, 3e-4, 1e-3)
METHODS = ("ga", "gaft", "salun_ref")


def main() -> None:
    p = params_mod.load()
    b, d = from_params(p.model, "cpu"), p.data
    model, tok = b.model, b.tokenizer
    concept = read_concept(p.sets.out)
    kinds = scorer_kinds(standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas,
                                     p.eval.templates))
    fs, retain, rv = (load_split(p.sets.out, s, b.preprocess, tok)
                      for s in ("forget_search", "retain", "retain_val"))
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rows = []
    for method in METHODS:
        for lr in GRID:
            model.load_state_dict(base)
            torch.manual_seed(p.seed)
            cfg = replace(C.baseline_settings(p.baselines, method, p.seed), lr=lr)
            rule = StopRule(TrialScorer(model, tok, kinds, concept, fs, rv, p.unlearn.topk,
                                        cached=False), p.unlearn.target)
            out = run_method(method, model, BaselineData(fs, retain), cfg, rule)
            last = out.checks[-1]
            rows.append({"method": method, "lr": lr, "reached": out.reached,
                         "time_to_forget_s": out.time_to_forget_s, "epochs": out.epochs,
                         "search_forget": last.forget, "search_retain": last.retain})
            print(json.dumps(rows[-1]), file=sys.stderr)
    model.load_state_dict(base)
    chosen = {}
    for method in METHODS:
        ok = [r for r in rows if r["method"] == method and r["reached"]]
        chosen[method] = max(ok, key=lambda r: r["search_retain"])["lr"] if ok else None
    OUT.write_text(json.dumps({"concept": concept.label, "topk": p.unlearn.topk,
                               "target": p.unlearn.target, "epochs": p.baselines.epochs,
                               "checks_per_epoch": p.baselines.checks_per_epoch,
                               "torch_threads": torch.get_num_threads(), "runs": rows,
                               "chosen_by_search_retain": chosen}, indent=1) + "\n")
    print(f"wrote {OUT}: {chosen}")


if __name__ == "__main__":
    main()
