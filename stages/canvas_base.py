"""Stage canvas_base: the unedited generator's whole style x object grid, generated with the
evaluation seeds and judged by both classifiers. Its accuracies are the ceiling of IRA and CRA,
and every target's "before" numbers (the grid is generated once, not once per target)."""

from __future__ import annotations

import time

import torch

from pipeline.canvas import classifiers as C
from pipeline.canvas import data as canvas_data
from pipeline.canvas import protocol
from pipeline.diffusion import sd as sd_mod
from pipeline.entry import metrics_path, run
from pipeline.io import write_json
from pipeline.models.factory import resolve_device
from pipeline.params import Params


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    c, e, k = p.canvas, p.canvas.evaluate, p.canvas.classifiers
    canvas = canvas_data.load(p.data.unlearncanvas, c.styles, c.objects)
    pipe = sd_mod.load(c.pipeline, resolve_device(p.device))
    style_judge, object_judge = C.load_judges(k, c.styles, c.objects, pipe.device)
    start = time.time()
    grid = protocol.judge_grid(pipe, canvas, c.prompt, style_judge, object_judge,
                               e.images_per_prompt, p.seed, e.steps, e.guidance,
                               sd_mod.image_size(pipe))
    elapsed = time.time() - start
    protocol.save_grid(c.base, protocol.grid_settings(c.styles, c.objects, c.prompt, p.seed, e,
                                                      k.style, k.object), grid)
    ceiling, images = protocol.overall(grid), int(grid.style_acc.size * e.images_per_prompt)
    write_json(metrics_path("canvas_base"), {
        "ceiling": ceiling,
        "per_style": dict(zip(c.styles, grid.style_acc.mean(1).round(4).tolist())),
        "per_object": dict(zip(c.objects, grid.object_acc.mean(0).round(4).tolist())),
        "images": images, "time_s": round(elapsed, 1), "seed": p.seed})
    print(f"canvas_base: generated canvas judged as its style {ceiling['style']:.3f}, as its "
          f"object {ceiling['object']:.3f} ({images} images, {elapsed:.0f}s)")


if __name__ == "__main__":
    run(main)
