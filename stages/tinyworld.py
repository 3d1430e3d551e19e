"""Stage tinyworld: write the synthetic tiny world into the real data formats (embedded default)."""

from __future__ import annotations

import time

from pipeline.entry import run
from pipeline.io import atomic_dir
from pipeline.params import Params
from pipeline.tinyworld.generate import WorldConfig, generate


def main(p: Params) -> None:
    t = p.tinyworld
    start = time.time()
    with atomic_dir(t.out) as tmp:  # the whole world appears at once, or not at all
        summary = generate(WorldConfig.from_params(t, p.seed), tmp)
    print(f"tinyworld: {len(summary['identities'])} identities, {len(summary['characters'])} "
          f"characters, {len(summary['objects'])} objects, {len(summary['styles'])} styles; "
          f"{t.n_shards} shards x {t.samples_per_shard} in {time.time() - start:.1f}s -> {t.out}")


if __name__ == "__main__":
    run(main, embedded=True)
