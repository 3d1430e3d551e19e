"""Stage canvas (main pipeline) and the UnlearnCanvas sweep's per-target stages: SLUG removes one
style or object from the generator's text encoder; UA / IRA / CRA on the evaluation seeds, beside
the unedited grid; time, peak memory and storage of the unlearning itself.

    python -m stages.canvas --target Van_Gogh --selectivity none --patch DIR --metrics FILE
                            [--skip-unknown]

With ``--skip-unknown`` (the main pipeline, whose target is the params' concept) a concept that is
no canvas style or object (an identity, say) is a reported skip; without it, an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.canvas import data as canvas_data
from pipeline.canvas import target as T
from pipeline.diffusion import unlearn as U
from pipeline.entry import run
from pipeline.io import write_json
from pipeline.params import SELECTIVITY, Params
from pipeline.progress import progress
from pipeline.unlearn import slug


def main(p: Params) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True, help="a style or object (folder name)")
    ap.add_argument("--skip-unknown", action="store_true", help="a target that is no style or "
                    "object is a reported skip, not an error")
    ap.add_argument("--selectivity", required=True, choices=SELECTIVITY,
                    help="the step (unlearn.selectivity): none (the paper) | nullspace")
    ap.add_argument("--patch", required=True, help="the patch folder to write")
    ap.add_argument("--metrics", required=True, help="the metrics file to write")
    args = ap.parse_args(sys.argv[1:])
    c = p.canvas
    canvas = canvas_data.load(p.data.unlearncanvas, c.styles, c.objects)
    target = T.find_or_skip(canvas, args.target, not args.skip_unknown, args.patch, args.metrics)
    if target is None:
        return
    r = T.run(canvas, target, c, p.model, p.gradients, device=p.device, seed=p.seed,
              signed=p.rank.alignment == "signed", scale0=p.unlearn.scale0,
              selectivity=slug.Selectivity(args.selectivity, p.unlearn.energy), progress=progress)
    U.save(r.patch, r.mapped, args.patch)
    m = T.metrics(r, target, c, (Path(args.patch) / U.MAPPED).stat().st_size)
    write_json(args.metrics, m)
    print(f"canvas: {m['method']}: {target.kind} {target.name}: UA {m['UA']:.3f}, IRA {m['IRA']:.3f} (ceiling "
          f"{m['ceiling']['IRA']:.3f}), CRA {m['CRA']:.3f} (ceiling {m['ceiling']['CRA']:.3f}); "
          f"{m['layer']} at {m['rel_step']:.3f} x ||theta||; {m['time_s']:.1f}s, "
          f"{m['storage_mb']:.3f} MB")


if __name__ == "__main__":
    run(main, name="canvas")
