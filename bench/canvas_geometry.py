"""Benchmark (diagnostic): can any step that never sees the unseen half leave it in place?

For every UnlearnCanvas target and every linear map of the generator's text encoder, the inputs
that map receives (every token of the grid's prompts, as ``bench.canvas_halves`` groups them:
the target's own, the seen half, the unseen half) are split by the seen half's projector ``P``
(the top eigenvectors of the seen half's input covariance holding ``unlearn.energy`` of its
trace, as ``pipeline.unlearn.selective`` builds it). Whatever a selective step does, it acts on
``(I - P) x``; the step that best singles the target out acts on the top directions ``U`` of the
target's residual ``(I - P) X_t`` (those holding 90 % of its energy). Measured:

- ``target``: the share of the target's input energy in ``U`` (what such a step can move);
- ``unseen``: the share of the unseen half's input energy in ``U`` (what it moves with it);
- ``ratio``: target / unseen. A step that moves the target's outputs by ``m`` moves the unseen
  half's by about ``m / sqrt(ratio)``.

Per target: the best ratio over the encoder's maps, and the ratio at the map the sweep's
selective step chose (``nullspace`` in ``canvas.methods``): whether a better layer rule could help.

Text only, no generation, no patch: it measures the encoder's geometry, not a method.

    python -m bench.canvas_geometry     # after `python3 dev.py canvas`; bench/canvas_geometry.json
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from bench.canvas_halves import prompt_ids, setup

OUT = Path("bench/canvas_geometry.json")
SITES = {"q_proj": "self_attn.q_proj", "out_proj": "self_attn.out_proj", "fc1": "mlp.fc1",
         "fc2": "mlp.fc2"}
OPEN_CLIP = {"attn.in_proj_weight": "q_proj", "attn.out_proj.weight": "out_proj",
             "mlp.c_fc.weight": "fc1", "mlp.c_proj.weight": "fc2"}  # the patch's names


def site_of(layer: str) -> str | None:
    """``block.site`` of an open_clip text-tower tensor (``transformer.resblocks.0.mlp.c_fc...``)."""
    parts = layer.split(".")
    if len(parts) < 4 or parts[1] != "resblocks":
        return None
    short = OPEN_CLIP.get(".".join(parts[3:]))
    return f"{parts[2]}.{short}" if short else None


def inputs(enc, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every position's input (rows) of each block's linear maps, ``block.site`` -> (n, d): the
    padding's too, whose hidden states the generator reads as well."""
    got, hooks = {}, []
    for b, layer in enumerate(getattr(enc, "text_model", enc).encoder.layers):
        for short, path in SITES.items():
            module = layer.get_submodule(path)

            def hook(_m, args, _out, key=f"{b}.{short}"):
                got[key] = args[0].flatten(0, 1).double()
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            enc(ids)
    finally:
        for h in hooks:
            h.remove()
    return got


def top(x: torch.Tensor, share: float) -> torch.Tensor:
    """The fewest top right-singular directions of ``x`` holding ``share`` of its energy."""
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    e = torch.cumsum(s ** 2, 0) / (s ** 2).sum()
    return vh[: int((e < share - 1e-12).sum()) + 1].T


def main() -> None:
    from pipeline.canvas import data as canvas_data
    from pipeline.canvas.target import halves
    from pipeline.unlearn.selective import projector

    p, canvas, pipe = setup()
    c = p.canvas

    def group(kind: str, names: list[str]) -> dict[str, torch.Tensor]:
        return inputs(pipe.text_encoder, prompt_ids(p, canvas, pipe.tokenizer, kind, names))

    rows = []
    for kind in ("style", "object"):
        for name in canvas.names(kind):
            seen, unseen = halves(canvas, canvas_data.find_target(canvas, name))
            xt, xs, xu = group(kind, [name]), group(kind, seen), group(kind, unseen)
            for site in xt:
                proj, _ = projector(xs[site].T @ xs[site], p.unlearn.energy)
                eye = torch.eye(len(proj), dtype=proj.dtype)
                u = top(xt[site] @ (eye - proj), 0.9)
                t_share = float((xt[site] @ u).square().sum() / xt[site].square().sum())
                u_share = float((xu[site] @ u).square().sum() / xu[site].square().sum())
                s_share = float((xs[site] @ u).square().sum() / xs[site].square().sum())
                rows.append({"target": name, "kind": kind, "site": site, "directions": u.shape[1],
                             "target_share": t_share, "seen_share": s_share,
                             "unseen_share": u_share, "ratio": t_share / max(u_share, 1e-12)})
    chosen = {}
    for r in rows:
        path = Path(c.out) / "nullspace" / r["kind"] / r["target"] / "metrics.json"
        if path.exists() and site_of(json.loads(path.read_text())["layer"]) == r["site"]:
            chosen[r["target"]] = r
    per_target = []
    for name in dict.fromkeys(r["target"] for r in rows):
        best = max((r for r in rows if r["target"] == name), key=lambda r: r["ratio"])
        got = chosen.get(name)
        per_target.append({"target": name, "kind": best["kind"], "best_site": best["site"],
                           "best_ratio": best["ratio"], "chosen_site": got and got["site"],
                           "chosen_ratio": got and got["ratio"]})
    summary = {}
    for kind in ("style", "object"):
        mine = [t for t in per_target if t["kind"] == kind]
        summary[f"{kind}/best"] = {"ratio": round(statistics.median(t["best_ratio"]
                                                                    for t in mine), 2)}
        picked = [t["chosen_ratio"] for t in mine if t["chosen_ratio"] is not None]
        if picked:
            summary[f"{kind}/chosen"] = {"ratio": round(statistics.median(picked), 2),
                                         "targets": len(picked)}
        for site in dict.fromkeys(r["site"] for r in rows):
            sub = [r for r in rows if r["kind"] == kind and r["site"] == site]
            summary[f"{kind}/{site}"] = {k: round(statistics.median(r[k] for r in sub), 4)
                                         for k in ("target_share", "seen_share", "unseen_share",
                                                   "ratio")}
    OUT.write_text(json.dumps({"what": __doc__.split("\n\n")[1].replace("\n", " "),
                               "energy": p.unlearn.energy, "summary": summary,
                               "per_target": per_target, "rows": rows},
                              indent=2) + "\n")
    for k, v in summary.items():
        print(f"{k:>20}: " + "  ".join(f"{a} {b:.4g}" for a, b in v.items()))


if __name__ == "__main__":
    main()
