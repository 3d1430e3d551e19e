"""Benchmark (exploratory, issue 15's second candidate): choose the selective step's map by what
the generator reads, estimated on the seen half alone, and search that map only (``alone``) or
beside the maps the sweep's rule searches (``added``).

For each UnlearnCanvas target and each linear map of the text encoder, a leave-one-out ratio: for
every concept ``s`` of the seen half, the projector of the seen half without ``s``, and the ratio
of the target's input energy to ``s``'s in the top directions that projection leaves of the
target's inputs (as ``bench.canvas_geometry`` measures it against the unseen half); the median
over ``s``. The map with the highest ratio is searched (``nullspace``, the sweep's settings
otherwise): alone, or added to the rule's maps. Reported beside the sweep's own ``nullspace`` rows: the search split (the
choice: how many targets reach the threshold, their search retain) and the evaluation seeds.

    python -m bench.canvas_loo_rule alone|added [TARGET ...]   # after `python3 dev.py canvas`
                                                   # bench/canvas_loo_rule_<mode>.json, ~8 min
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.canvas_geometry import OPEN_CLIP, inputs, top
from bench.canvas_halves import prompt_ids, setup


def goal(m: dict) -> bool:
    c = m["ceiling"]
    return m["UA"] >= 0.8 and m["IRA"] >= c["IRA"] - 0.1 and m["CRA"] >= c["CRA"] - 0.1


def main(mode: str, only: list[str]) -> None:
    if mode not in ("alone", "added"):
        raise SystemExit("usage: python -m bench.canvas_loo_rule alone|added [TARGET ...]")
    from pipeline.canvas import data as canvas_data
    from pipeline.canvas import target as T
    from pipeline.unlearn import slug
    from pipeline.unlearn.selective import projector

    p, canvas, pipe = setup()
    c = p.canvas
    short = {v: k for k, v in OPEN_CLIP.items()}

    def group(kind: str, names: list[str]) -> dict[str, torch.Tensor]:
        return inputs(pipe.text_encoder, prompt_ids(p, canvas, pipe.tokenizer, kind, names))

    def share(x: torch.Tensor, u: torch.Tensor) -> float:
        return float((x @ u).square().sum() / x.square().sum())

    rows, rank = [], slug.rank
    for kind in ("style", "object"):
        for name in canvas.names(kind):
            if only and name not in only:
                continue
            target = canvas_data.find_target(canvas, name)
            seen = T.halves(canvas, target)[0]
            xt, per = group(kind, [name]), {s: group(kind, [s]) for s in seen}
            loo = {}
            for site in xt:
                ratios = []
                for s in seen:
                    rest = torch.cat([per[o][site] for o in seen if o != s])
                    proj, _ = projector(rest.T @ rest, p.unlearn.energy)
                    u = top(xt[site] @ (torch.eye(len(proj), dtype=proj.dtype) - proj), 0.9)
                    ratios.append(share(xt[site], u) / max(share(per[s][site], u), 1e-12))
                loo[site] = statistics.median(ratios)
            best = max(loo, key=loo.get)
            block, part = best.split(".")
            layer = f"transformer.resblocks.{block}.{short[part]}"

            def forced(table, cfg, readable=None, layer=layer):
                layers, cands = rank(table, cfg, readable)
                return ([layer] if mode == "alone" else list(dict.fromkeys([*layers, layer])),
                        cands)

            slug.rank, start = forced, time.time()
            try:
                r = T.run(canvas, target, c, p.model, p.gradients, device=p.device, seed=p.seed,
                          signed=p.rank.alignment == "signed", scale0=p.unlearn.scale0,
                          selectivity=slug.Selectivity("nullspace", p.unlearn.energy))
            finally:
                slug.rank = rank
            m = T.metrics(r, target, c, 0)
            ref = json.loads((Path(c.out) / "nullspace" / kind / name / "metrics.json")
                             .read_text())
            rows.append({"target": name, "kind": kind, "loo": loo, "layer": layer,
                         "rel_step": m["rel_step"], "time_s": round(time.time() - start, 1),
                         **{k: {"layer": x["layer"], "UA": x["UA"], "IRA": x["IRA"],
                                "CRA": x["CRA"], "goal": goal(x),
                                "search": {y: x["search"][y]
                                           for y in ("reached", "forget", "retain")}}
                            for k, x in (("rule", m), ("sweep", ref))}})
            print(f"{kind:6} {name:11} {best:10} (ratio {loo[best]:.1f}): search retain "
                  f"{m['search']['retain']:.2f}, reached {m['search']['reached']} (sweep "
                  f"{ref['search']['retain']:.2f}, {ref['search']['reached']}); goal "
                  f"{goal(m)} (sweep {goal(ref)})", flush=True)
    summary = {}
    for kind in ("style", "object"):
        sub = [r for r in rows if r["kind"] == kind]
        if sub:
            summary[kind] = {k: {"reached": sum(r[k]["search"]["reached"] for r in sub),
                                 "search_retain": round(statistics.mean(
                                     r[k]["search"]["retain"] for r in sub), 3),
                                 "goal": sum(r[k]["goal"] for r in sub), "targets": len(sub)}
                             for k in ("rule", "sweep")}
    Path(f"bench/canvas_loo_rule_{mode}.json").write_text(json.dumps({
        "what": f"the map chosen by a seen-half leave-one-out ratio, searched {mode}, against "
                "the sweep's nullspace rows",
        "summary": summary, "rows": rows}, indent=2) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "", sys.argv[2:])
