"""Benchmark: the lean step search against the exhaustive one, on several concepts.

For each concept, the pipeline's own stages build its sets, gradients and ranking in a scratch
folder (``python -m stages.filter`` ... ``stages.rank`` with the committed params, the concept
changed, every output under the scratch folder). The step search then runs twice on the same
gradients and search data: *exhaustive* (``rtol: 0``, no pruning: every layer spends
``max_evals``, as the reference does) and *lean* (the committed ``unlearn.rtol`` and
``unlearn.prune``). Both chosen patches are evaluated on the held-out sets (forget test split,
CelebA, ImageNet). Run after ``dvc repro pretrain`` (about 2 min per concept):

    python -m bench.lean_search            # writes bench/lean_search.json
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from pipeline import params as params_mod
from pipeline.evaluate.sets import scorer_kinds, standard_sets
from pipeline.evaluate.unlearning import eval_inputs, evaluate
from pipeline.models.factory import from_params
from pipeline.sets.build import load_split, read_concept
from pipeline.unlearn import slug
from pipeline.unlearn import workflow as W
from pipeline.unlearn.trials import TrialScorer

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench/lean_search.json"
CONCEPTS = ("Elon Musk", "Barack Obama", "Lionel Messi", "Iron Man", "Mickey Mouse", "triangle")
STAGES = ("filter", "build_sets", "gradients", "rank")


def scratch_params(folder: Path, concept: str, max_matches: int | None = None) -> Path:
    """This repository's params.yaml with ``concept`` (and ``filter.max_matches``, unless
    ``None``), every output under ``folder/work``; data/ and models/ linked from here."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["concept"] = concept
    if max_matches is not None:
        raw["filter"]["max_matches"] = max_matches
    raw["filter"]["out"] = "work/filter/forget_index.csv"
    for group in ("sets", "gradients", "rank"):
        raw[group]["out"] = f"work/{group}"
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    for link in ("data", "models"):
        (folder / link).symlink_to(ROOT / link)
    return path


def one(concept: str, folder: Path) -> dict:
    scratch_params(folder, concept)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for stage in STAGES:
        subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=folder, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return _searches(params_mod.load())
    finally:
        os.chdir(cwd)


def _searches(p) -> dict:
    torch.manual_seed(p.seed)
    b, d, u = from_params(p.model, "cpu"), p.data, p.unlearn
    concept = read_concept(p.sets.out)
    evs = standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas, p.eval.templates)
    kinds = scorer_kinds(evs)
    fs, rv = (load_split(p.sets.out, s, b.preprocess, b.tokenizer)
              for s in ("forget_search", "retain_val"))
    x = eval_inputs(evs, b, concept, p.sets.out, False, d.celeba, p.evaluate.frequent,
                    p.evaluate.imagenet_images, p.seed, p.evaluate.batch_size)
    grads, selection = W.read_grads(p.gradients.out), W.read_selection(p.rank.out)
    layers = [x for x in selection["selected"] if x in grads]
    lean = slug.SearchConfig(u.target, u.max_evals, u.scale0, u.rtol, u.prune)
    row = {"concept": concept.label, "kind": concept.kind, "layers": len(layers)}
    for name, cfg in (("exhaustive", replace(lean, rtol=0.0, prune=False)), ("lean", lean)):
        scorer = TrialScorer(b.model, b.tokenizer, kinds, concept, fs, rv, u.topk)
        t = time.perf_counter()
        res = slug.search(b.model, grads, layers, scorer, cfg, fallback=slug.strongest)
        elapsed = time.perf_counter() - t
        with slug.edited(dict(b.model.named_parameters())[res.layer], grads[res.layer], res.lam):
            held = evaluate(b.model, b.tokenizer, x, 0)
        row[name] = {"layer": res.layer, "rel_step": res.rel_step, "reached": res.reached,
                     "search_retain": res.trial.retain, "evaluations": res.evaluations,
                     "search_s": round(elapsed, 2),
                     "monotone_layers": sum(s.monotone for s in res.searches),
                     "forget_top1": held["forget"]["top1"], "forget_top5": held["forget"]["top5"],
                     "celeba_top1": held["celeba"]["top1"],
                     "imagenet_top1": held["imagenet"]["top1"]}
    e, le = row["exhaustive"], row["lean"]
    row["same_layer_or_retain_within_0.005"] = (
        e["layer"] == le["layer"] or abs(e["search_retain"] - le["search_retain"]) <= 0.005)
    row["held_out_within_1_point"] = all(abs(e[k] - le[k]) <= 0.01 for k in (
        "forget_top1", "forget_top5", "celeba_top1", "imagenet_top1"))
    return row


def main(concepts=CONCEPTS) -> None:
    rows = []
    for c in concepts:
        folder = Path(tempfile.mkdtemp(prefix="lean_search_"))
        try:
            rows.append(one(c, folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(json.dumps(rows[-1]), file=sys.stderr)
    OUT.write_text(json.dumps({"params": "params.yaml (unlearn.*) as committed; split: forget "
                               "search / retain validation for the search, held-out for the rest",
                               "torch_threads": torch.get_num_threads(), "concepts": rows},
                              indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(sys.argv[1:] or CONCEPTS)
