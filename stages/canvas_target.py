"""Stage canvas (main pipeline) and the UnlearnCanvas sweep's per-target stages: SLUG removes one
style or object from the generator's text encoder; UA / IRA / CRA on the evaluation seeds, beside
the unedited grid; time, peak memory and storage of the unlearning itself.

    python -m stages.canvas_target                      # the target is params' `concept`
    python -m stages.canvas_target --target Van_Gogh --out results/unlearncanvas/style/Van_Gogh

In the main pipeline a concept that is no canvas style or object (an identity, say) is a reported
skip: metrics/canvas.json says so and nothing else is written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from pipeline.canvas import data as canvas_data
from pipeline.canvas import protocol
from pipeline.canvas import target as T
from pipeline.diffusion import sd as sd_mod
from pipeline.diffusion import text_encoder as hf_text
from pipeline.errors import DataError
from pipeline.io import atomic_dir, sha256_file, write_json
from pipeline.measure import Meter
from pipeline.models import build, state_dict_hash
from pipeline.params import Params
from pipeline.progress import progress
from pipeline.unlearn import patch as patch_mod

from ._common import run
from .canvas_base import GRID, judges, pipeline_size, settings

MAIN_METRICS = Path("metrics/canvas.json")
MAPPED = "text_encoder_patch.safetensors"


def _args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", help="a style or object folder name (default: params' concept)")
    ap.add_argument("--out", help="folder for metrics.json and the patch (default: canvas.patch "
                                  "and metrics/canvas.json)")
    return ap.parse_args(sys.argv[1:])


def base_grid(p: Params) -> protocol.Grid:
    path = Path(p.canvas.base) / GRID
    if not path.exists():
        raise DataError(f"{path} not found; run the canvas_base stage first")
    saved = json.loads(path.read_text())
    if saved["settings"] != settings(p):
        raise DataError(f"{path} was made with other canvas settings or classifiers; rerun "
                        f"canvas_base")
    return protocol.Grid.from_dict(saved["grid"])


def main(p: Params) -> None:
    args = _args()
    c = p.canvas
    name = args.target or p.concept
    canvas = canvas_data.load(p.data.unlearncanvas, c.styles, c.objects)
    target = canvas_data.find_target(canvas, name)
    metrics_path = Path(args.out) / "metrics.json" if args.out else MAIN_METRICS
    patch_dir = Path(args.out) / "patch" if args.out else Path(c.patch)
    if target is None:
        if args.target:
            raise DataError(f"{name!r} is neither a style (canvas.styles) nor an object "
                            f"(canvas.objects)")
        with atomic_dir(patch_dir) as tmp:
            (tmp / "SKIPPED").write_text(f"{name} is no UnlearnCanvas style or object\n")
        write_json(metrics_path, {"concept": name, "skipped": True, "reason":
                                  f"{name!r} is neither a canvas style nor object; run "
                                  f"`dvc exp run -S concept=<Style or Object>`"})
        print(f"canvas: skipped, {name!r} is no UnlearnCanvas style or object")
        return
    torch.manual_seed(p.seed)
    before = base_grid(p)
    m = p.model
    bundle = build(m.name, m.pretrained, m.quick_gelu, m.precision, p.device)
    model = bundle.model
    pipe = sd_mod.load(c.pipeline, next(model.parameters()).device)
    sd_mod.check_text_encoder(pipe.text_encoder, model, atol=1e-6)
    style_judge, object_judge = judges(p, pipe.device)
    same_judge = style_judge if target.kind == "style" else object_judge
    size, s, e = pipeline_size(pipe), c.search, c.evaluate
    base_hash = state_dict_hash(model)

    with Meter(pipe.device) as meter:
        forget, retain = T.forget_retain(canvas, target, c.sets, bundle.preprocess,
                                         bundle.tokenizer, c.forget_captions, c.n_retain)
        scorer = T.CanvasScorer(pipe, model, canvas, c.prompt, target, same_judge,
                                s.images_per_prompt, s.retained_prompts, p.seed, e.steps,
                                e.guidance, size)
        searches, chosen, grads, table = T.unlearn(
            model, pipe, forget, retain, scorer,
            batch_size=p.gradients.batch_size, exclude=p.gradients.exclude,
            signed=p.rank.alignment == "signed", fronts=s.fronts, rule=s.rule,
            target_score=s.target, max_evals=s.max_evals, scale0=p.unlearn.scale0,
            progress=progress)
    reached = chosen is not None
    if reached:
        best = chosen.result.best
    else:  # a benchmark row still needs numbers: the strongest forgetting tried, flagged
        chosen, best = min(((x, t) for x in searches for t in x.result.trials),
                           key=lambda xt: (xt[1].forget, -xt[1].retain, xt[1].lam / xt[0].rho))
        print(f"warning: {target.name}: no text layer reached a search accuracy <= {s.target} "
              f"within {s.max_evals} evaluations; reporting the lowest one tried "
              f"({best.forget:.3f}), flagged reached: false", file=sys.stderr)
    new = model.state_dict()[chosen.layer] + best.lam * grads.forget[chosen.layer]
    patch = patch_mod.Patch({chosen.layer: new}, {
        "concept": target.name, "kind": target.kind, "layers": [chosen.layer],
        "lambda": best.lam, "rel_step": best.lam / chosen.rho, "tower": "text",
        "base_model": bundle.describe(), "base_model_sha256": base_hash, "seed": p.seed,
        "search": {"target": s.target, "reached": reached, "forget": best.forget,
                   "retain": best.retain},
    })
    mapped = hf_text.map_patch(patch.tensors, pipe.text_encoder)

    start = time.time()
    enc = pipe.text_encoder.state_dict()
    originals = {k: enc[k].detach().clone() for k in mapped}
    hf_text.apply_mapped(pipe.text_encoder, mapped)
    try:
        after = protocol.judge_grid(pipe, canvas, c.prompt, style_judge, object_judge,
                                    e.images_per_prompt, p.seed, e.steps, e.guidance, size)
    finally:
        hf_text.apply_mapped(pipe.text_encoder, originals)
    eval_s = time.time() - start

    with atomic_dir(patch_dir) as tmp:
        patch_mod.save(patch, tmp)
        save_file({k: v.detach().cpu().contiguous() for k, v in mapped.items()}, str(tmp / MAPPED))
    storage = (patch_dir / MAPPED).stat().st_size
    res_before, res_after = protocol.scores(before, target), protocol.scores(after, target)
    out = {
        "concept": target.name, "kind": target.kind, "skipped": False,
        "UA": res_after["UA"], "IRA": res_after["IRA"], "CRA": res_after["CRA"],
        "before": res_before, "after": res_after,
        "ceiling": {"IRA": res_before["IRA"], "CRA": res_before["CRA"]},
        "layer": chosen.layer, "mapped_tensors": sorted(mapped), "lambda": best.lam,
        "rel_step": best.lam / chosen.rho,
        "search": {"rule": s.rule, "target": s.target, "reached": reached, "forget": best.forget,
                   "retain": best.retain, "evaluations": sum(len(x.result.trials)
                                                             for x in searches),
                   "layers": {x.layer: [{"rel_step": t.lam / x.rho, "forget": t.forget,
                                         "retain": t.retain} for t in x.result.trials]
                              for x in searches},
                   "forget_pairs": len(forget.images), "retain_pairs": len(retain.images)},
        "ranking": [{k: r[k] for k in ("name", "importance", "alignment", "front_level")}
                    for r in sorted(table, key=lambda r: (r["front_level"], -r["importance"]))],
        "time_s": round(meter.time_s, 2), "peak_memory_mb": round(meter.peak_bytes / 2 ** 20, 1),
        "memory_measure": "CUDA max allocated" if pipe.device.type == "cuda" else
        "growth of the process RSS over the loaded models",
        "storage_mb": round(storage / 2 ** 20, 4),
        "eval": {"images": int(after.style_acc.size * e.images_per_prompt),
                 "images_per_prompt": e.images_per_prompt, "time_s": round(eval_s, 1)},
        "seed": p.seed, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "base_model_sha256": base_hash,
        "forget_tar_sha256": sha256_file(Path(c.sets) / canvas_data.tar_name(target.kind,
                                                                            target.name)),
    }
    write_json(metrics_path, out)
    print(f"canvas: {target.kind} {target.name}: UA {out['UA']:.3f}, IRA {out['IRA']:.3f} "
          f"(ceiling {res_before['IRA']:.3f}), CRA {out['CRA']:.3f} (ceiling "
          f"{res_before['CRA']:.3f}); {chosen.layer} at {out['rel_step']:.3f} x ||theta||; "
          f"{out['time_s']:.1f}s, {out['storage_mb']:.3f} MB")


if __name__ == "__main__":
    run(main)
