"""Stage canvas_base: the unedited generator's whole style x object grid, generated with the
evaluation seeds and judged by both classifiers. Its accuracies are the ceiling of IRA and CRA,
and every target's "before" numbers (the grid is generated once, not once per target)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from pipeline.canvas import classifiers as C
from pipeline.canvas import data as canvas_data
from pipeline.canvas import protocol
from pipeline.diffusion import sd as sd_mod
from pipeline.models.factory import resolve_device
from pipeline.io import sha256_file, write_json
from pipeline.params import Params

from ._common import run

METRICS = Path("metrics/canvas_base.json")
GRID = "grid.json"


def settings(p: Params) -> dict:
    """What the grid depends on; a target stage refuses a grid made with other settings."""
    c, e = p.canvas, p.canvas.evaluate
    return {"styles": c.styles, "objects": c.objects, "prompt": c.prompt, "seed": p.seed,
            "images_per_prompt": e.images_per_prompt, "steps": e.steps, "guidance": e.guidance,
            "classifiers": {"style": sha256_file(c.classifiers.style),
                            "object": sha256_file(c.classifiers.object)}}


def judges(p: Params, device) -> tuple[C.Judge, C.Judge]:
    k = p.canvas.classifiers
    common = dict(key=k.key, image_size=k.image_size, mean=k.mean, std=k.std, device=device)
    return (C.load(k.arch, k.style, p.canvas.styles, "canvas.styles", **common),
            C.load(k.arch, k.object, p.canvas.objects, "canvas.objects", **common))


def pipeline_size(pipe) -> int:
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    c, e = p.canvas, p.canvas.evaluate
    canvas = canvas_data.load(p.data.unlearncanvas, c.styles, c.objects)
    pipe = sd_mod.load(c.pipeline, resolve_device(p.device))
    style_judge, object_judge = judges(p, pipe.device)
    start = time.time()
    grid = protocol.judge_grid(pipe, canvas, c.prompt, style_judge, object_judge,
                               e.images_per_prompt, p.seed, e.steps, e.guidance,
                               pipeline_size(pipe))
    elapsed = time.time() - start
    write_json(Path(c.base) / GRID, {"settings": settings(p), "grid": grid.to_dict()})
    ceiling = protocol.overall(grid)
    write_json(METRICS, {
        "ceiling": ceiling,
        "per_style": dict(zip(c.styles, grid.style_acc.mean(1).round(4).tolist())),
        "per_object": dict(zip(c.objects, grid.object_acc.mean(0).round(4).tolist())),
        "images": int(grid.style_acc.size * e.images_per_prompt), "time_s": round(elapsed, 1),
        "seed": p.seed,
    })
    print(f"canvas_base: generated canvas judged as its style {ceiling['style']:.3f}, as its "
          f"object {ceiling['object']:.3f} ({grid.style_acc.size * e.images_per_prompt} images, "
          f"{elapsed:.0f}s)")


if __name__ == "__main__":
    run(main)
