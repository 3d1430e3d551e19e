"""Benchmark: the cost of one step-search trial with caches vs a naive full re-evaluation.

Uses the pipeline's own artifacts (the tiny CLIP, the sets, the stored gradients, the selected
layers), so run it after `dvc repro unlearn`. For every selected layer it times `repeats` trials
of TrialScorer.score() under an edit, once with FeatureCache (other tower and the activations
below the edited block cached) and once recomputing everything, and writes bench/results.json.

    python -m bench.search_trial
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from pipeline import params as params_mod
from pipeline.evaluate.sets import scorer_kinds, standard_sets
from pipeline.models.factory import from_params
from pipeline.sets.build import load_split, read_concept
from pipeline.unlearn import workflow as W
from pipeline.unlearn.slug import edited
from pipeline.unlearn.trials import TrialScorer

OUT = Path("bench/results.json")


def main(repeats: int = 5) -> None:
    p = params_mod.load()
    torch.manual_seed(0)
    b, d = from_params(p.model, "cpu"), p.data
    concept = read_concept(p.sets.out)
    kinds = scorer_kinds(standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas,
                                     p.eval.templates))
    forget = load_split(p.sets.out, "forget_search", b.preprocess, b.tokenizer)
    retain = load_split(p.sets.out, "retain_val", b.preprocess, b.tokenizer)
    grads = W.read_grads(p.gradients.out)
    layers = [x for x in W.read_selection(p.rank.out)["selected"] if x in grads]
    params = dict(b.model.named_parameters())
    rows = []
    for layer in layers:
        times = {}
        for mode in ("cached", "naive"):
            scorer = TrialScorer(b.model, b.tokenizer, kinds, concept, forget, retain,
                                 p.unlearn.topk, cached=mode == "cached")
            scorer.prepare(layer)
            lam = 0.1 * float(params[layer].norm() / grads[layer].norm())
            ts = []
            for _ in range(repeats + 1):
                with edited(params[layer], grads[layer], lam):
                    t = time.perf_counter()
                    scorer.score()
                    ts.append(time.perf_counter() - t)
            times[mode] = statistics.median(ts[1:])  # the first call warms up
        rows.append({"layer": layer, "cached_s": times["cached"], "naive_s": times["naive"],
                     "ratio": times["cached"] / times["naive"]})
        print(f"{layer:55s} cached {times['cached'] * 1e3:7.1f} ms  naive "
              f"{times['naive'] * 1e3:7.1f} ms  ratio {rows[-1]['ratio']:.2f}")
    mean = statistics.mean(r["ratio"] for r in rows)
    OUT.write_text(json.dumps({"concept": concept.label, "threads": torch.get_num_threads(),
                               "forget_images": len(forget.images),
                               "retain_val_pairs": len(retain.images), "repeats": repeats,
                               "layers": rows, "mean_ratio": mean}, indent=2) + "\n")
    print(f"mean ratio cached / naive over {len(rows)} layers: {mean:.3f}")


if __name__ == "__main__":
    main()
