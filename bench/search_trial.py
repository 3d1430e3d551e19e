"""Benchmark: the cost of one step-search trial with caches vs a naive full re-evaluation.

Uses the pipeline's own artifacts (the tiny CLIP, the sets, the stored gradients, the selected
layers), so run it after `dvc repro unlearn`. For every selected layer it times `repeats` trials
of TrialScorer.score() under an edit in three modes and writes bench/results.json:

* ``shortcut``: FeatureCache with the linear shortcut (``unlearn.shortcut``: a linear map's
  edited output as ``y0 + lambda * (G x)``, both terms cached per layer; other layers as cached);
* ``cached``: FeatureCache without it (other tower and the activations below the edit cached);
* ``naive``: everything recomputed.

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


def main(repeats: int = 15) -> None:
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
        for mode in ("shortcut", "cached", "naive"):
            scorer = TrialScorer(b.model, b.tokenizer, kinds, concept, forget, retain,
                                 p.unlearn.topk, cached=mode != "naive",
                                 shortcut=mode == "shortcut")
            scorer.prepare(layer, grads[layer])
            lam = 0.1 * float(params[layer].norm() / grads[layer].norm())
            ts = []
            for _ in range(repeats + 1):
                with edited(params[layer], grads[layer], lam):
                    t = time.perf_counter()
                    scorer.score()
                    ts.append(time.perf_counter() - t)
            times[mode] = statistics.median(ts[1:])  # the first call warms up
        rows.append({"layer": layer, "shortcut_s": times["shortcut"], "cached_s": times["cached"],
                     "naive_s": times["naive"], "ratio": times["cached"] / times["naive"],
                     "shortcut_ratio": times["shortcut"] / times["cached"]})
        print(f"{layer:55s} shortcut {times['shortcut'] * 1e3:7.1f} ms  cached "
              f"{times['cached'] * 1e3:7.1f} ms  naive {times['naive'] * 1e3:7.1f} ms")
    mean = statistics.mean(r["ratio"] for r in rows)
    mean_cut = statistics.mean(r["shortcut_ratio"] for r in rows)
    OUT.write_text(json.dumps({"concept": concept.label, "threads": torch.get_num_threads(),
                               "forget_images": len(forget.images),
                               "retain_val_pairs": len(retain.images), "repeats": repeats,
                               "layers": rows, "mean_ratio": mean,
                               "mean_shortcut_ratio": mean_cut}, indent=2) + "\n")
    print(f"mean ratio over {len(rows)} layers: cached / naive {mean:.3f}, "
          f"shortcut / cached {mean_cut:.3f}")


if __name__ == "__main__":
    main()
