"""Benchmark: the one-layer, one-step frontier of the VLM path (issue 16's retained-drop bar).

Every vision layer the VLM reads is searched (the committed ``vlm.search`` judge and target,
``unlearn.scale0`` and ``unlearn.rtol``) with no pruning and ``--max-evals`` evaluations
each, so every layer gets the chance to reach the stop rule whatever its Pareto front. For each
layer: its front level, its chosen step, and the search split's forget and retain shares (what a
rule may look at); then that step mapped onto the VLM's tower and asked about the held-out images
(information only: no choice is made on them). Reads the committed run's outputs; run after
``dvc repro vlm_sets gradients`` (about 2 min on 2 cores):

    python -m bench.vlm_frontier            # writes bench/vlm_frontier.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from pipeline import params as params_mod
from pipeline.datasets.shards import ReadReport
from pipeline.models.factory import from_params
from pipeline.params import VLM_KINDS
from pipeline.sets.build import read_concept, require_split
from pipeline.unlearn import slug
from pipeline.unlearn import workflow as W
from pipeline.vlm import evaluate as E
from pipeline.vlm import llava
from pipeline.vlm import sets as vs
from pipeline.vlm import unlearn as U
from pipeline.vlm import vision_tower as vt

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench/vlm_frontier.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-evals", type=int, default=16)
    args = ap.parse_args()
    start = time.time()
    p = params_mod.load(ROOT / "params.yaml")
    torch.manual_seed(p.seed)
    v, u = p.vlm, p.unlearn
    bundle = from_params(p.model, p.device)
    vlm, processor = llava.load(v.model, bundle.device)
    tower = vlm.model.vision_tower
    concept = read_concept(p.sets.out)
    f, depth = vlm.config.vision_feature_layer, tower.config.num_hidden_layers
    grads = W.read_grads(p.gradients.out)
    rows = W.read_layers(p.gradients.out)
    every = replace(p.rank, fronts=len(rows))
    layers = U.layers(rows, grads, every, depth, f)
    _, ranked = slug.rank(rows, slug.RankConfig(p.rank.alignment == "signed", p.rank.fronts,
                                                p.rank.rule), U.readable(depth, f))
    level = {r["name"]: r["front_level"] for r in ranked}
    pre = llava.preprocess(processor)
    forget = U.target_questions(p.sets.out, concept, v, pre)
    questions = {k: getattr(v.questions, k) for k in VLM_KINDS}
    retained = U.labelled_questions(*vs.read(v.sets.out, "search"), questions, pre)
    scorer = U.AnswerScorer(bundle.model, vlm, processor, v.template, forget, retained,
                            v.batch_size)
    res = slug.search(bundle.model, grads, layers, scorer,
                      slug.SearchConfig(v.search.target, args.max_evals, u.scale0, u.rtol, False),
                      score_base=True)
    params = dict(bundle.model.named_parameters())
    out = []
    for s in res.searches:
        t = s.result.best
        row = {"layer": s.layer, "front_level": level[s.layer], "evaluations":
               len(s.result.trials), "reached": t is not None}
        if t is not None:
            value = slug.step(params[s.layer].detach(), grads[s.layer].to(params[s.layer]), t.lam)
            mapped = vt.map_patch({s.layer: value}, tower)
            items = E.stream(require_split(p.sets.out, "forget_test"), concept,
                             *vs.read(v.sets.out, "eval"), ReadReport())
            a = E.ask(vlm, processor, pre, v.template, questions, items, mapped, v.batch_size,
                      0, v.max_new_tokens)
            m = E.metrics(a, concept.label)
            row.update(rel_step=round(s.rel(t.lam), 4), search_forget=t.forget,
                       search_retain=round(t.retain, 4), heldout_target=m["after"]["target"],
                       heldout_retained=m["after"]["retained"],
                       heldout_retained_before=m["before"]["retained"])
        out.append(row)
        print(row, flush=True)
    OUT.write_text(json.dumps({
        "what": " ".join(__doc__.split("\n\n")[1].split()), "concept": concept.label,
        "search_before": {"forget": res.before[0], "retain": round(res.before[1], 4)},
        "max_evals": args.max_evals, "seed": p.seed, "time_s": round(time.time() - start, 1),
        "layers": out}, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
