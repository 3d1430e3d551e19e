"""Stage tinyworld: write the synthetic tiny world into the real data formats (embedded default)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from pipeline.params import Params
from pipeline.tinyworld.generate import KINDS, WorldConfig, generate

from ._common import run


def main(p: Params) -> None:
    t = p.tinyworld
    cfg = WorldConfig(seed=p.seed, n_shards=t.n_shards, samples_per_shard=t.samples_per_shard,
                      fail_rate=t.fail_rate, mix=tuple(float(t.mix[k]) for k in KINDS),
                      anonymous_rate=t.anonymous_rate, celeba_per_identity=t.celeba_per_identity,
                      imagenet_per_class=t.imagenet_per_class,
                      characters_per_class=t.characters_per_class,
                      canvas_per_pair=t.canvas_per_pair, holdout_samples=t.holdout_samples,
                      jpeg_quality=t.jpeg_quality,
                      workers=t.workers)
    out = Path(t.out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    start = time.time()
    summary = generate(cfg, tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # the whole world appears at once, or not at all
    print(f"tinyworld: {len(summary['identities'])} identities, {len(summary['characters'])} "
          f"characters, {len(summary['objects'])} objects, {len(summary['styles'])} styles; "
          f"{t.n_shards} shards x {t.samples_per_shard} in {time.time() - start:.1f}s -> {out}")


if __name__ == "__main__":
    run(main)
