"""Benchmark: one step-search trial with and without the linear shortcut (``unlearn.shortcut``)
at a real CLIP's width.

``FeatureCache`` with the shortcut starts a trial *after* the edited linear map: its output is
``y0 + lambda * (G x)``, both terms cached per layer. Without it, a trial reruns the map from its
cached input. On the tiny CLIP (width 128) the map is a small share of a trial and the two are
within run-to-run noise (``bench/results.json``); this bench measures where it can matter: an
open_clip architecture (random init: timing only) on random images and captions, for the three
linear maps of a top, a middle and (text tower) a top block. Both modes alternate, ``--repeats``
times each; the medians go to ``bench/linear_shortcut.json``.

    python -m bench.linear_shortcut                      # ViT-B-32, 64 images, 64 captions
    python -m bench.linear_shortcut --arch ViT-B-16 --images 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

OUT = Path("bench/linear_shortcut.json")


def layers(n_vision: int, n_text: int) -> list[str]:
    top, mid = n_vision - 1, n_vision // 2
    out = [f"visual.transformer.resblocks.{b}.{m}.weight" for b in (top, mid)
           for m in ("attn.out_proj", "mlp.c_fc", "mlp.c_proj")]
    return out + [f"transformer.resblocks.{n_text - 1}.mlp.{m}.weight" for m in ("c_fc", "c_proj")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--captions", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    import open_clip
    import torch

    from pipeline.unlearn.features import FeatureCache
    from pipeline.unlearn.slug import edited

    torch.manual_seed(0)
    model = open_clip.create_model(a.arch).eval()
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    tok = open_clip.get_tokenizer(a.arch)
    images = {"img": torch.randn(a.images, 3, size, size)}
    texts = {"txt": tok([f"a photo of person number {i}." for i in range(a.captions)])}
    params = dict(model.named_parameters())
    rows = []
    for layer in layers(len(model.visual.transformer.resblocks), len(model.transformer.resblocks)):
        g = torch.randn_like(params[layer])
        lam = 0.1 * float(params[layer].detach().norm() / g.norm())
        caches = {m: FeatureCache(model, images, texts, batch_size=64, shortcut=m == "shortcut")
                  for m in ("shortcut", "cached")}
        times = {m: [] for m in caches}
        for m, c in caches.items():
            c.prepare(layer, g)
        for r in range(a.repeats + 1):
            for m in (("shortcut", "cached") if r % 2 else ("cached", "shortcut")):
                with edited(params[layer], g, lam):
                    t0 = time.perf_counter()
                    caches[m].features()
                    if r:  # the first round warms up
                        times[m].append(time.perf_counter() - t0)
        with edited(params[layer], g, lam):
            diff = max(float((caches["shortcut"].features()[k] - caches["cached"].features()[k])
                             .abs().max()) for k in ("img", "txt"))
        med = {m: statistics.median(v) for m, v in times.items()}
        rows.append({"layer": layer, "shortcut_s": round(med["shortcut"], 4),
                     "cached_s": round(med["cached"], 4),
                     "speedup": round(med["cached"] / med["shortcut"], 2), "max_diff": diff})
        print(f"{layer:48s} shortcut {med['shortcut'] * 1e3:7.1f} ms  without "
              f"{med['cached'] * 1e3:7.1f} ms  ({rows[-1]['speedup']:.2f}x, diff {diff:.1e})")
    OUT.write_text(json.dumps({"arch": a.arch, "images": a.images, "captions": a.captions,
                               "repeats": a.repeats, "threads": torch.get_num_threads(),
                               "torch": torch.__version__, "layers": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
