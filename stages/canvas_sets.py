"""Stage canvas_sets: one forget tar per UnlearnCanvas style (all its objects) and per object (all
its styles), captioned with the benchmark prompt."""

from __future__ import annotations

from pipeline.canvas import data as canvas_data
from pipeline.entry import metrics_path, run
from pipeline.io import atomic_dir, write_json
from pipeline.params import Params


def main(p: Params) -> None:
    c = p.canvas
    canvas = canvas_data.load(p.data.unlearncanvas, c.styles, c.objects)
    with atomic_dir(c.sets) as tmp:
        counts = canvas_data.write_forget_tars(canvas, c.prompt, tmp)
    write_json(metrics_path("canvas_sets"), {"styles": len(canvas.styles),
                                             "objects": len(canvas.objects),
                                             "images": len(canvas.items), "pairs_per_tar": counts})
    print(f"canvas_sets: {len(counts)} tars from {len(canvas.items)} images")


if __name__ == "__main__":
    run(main)
