"""Stage retain_pool: the retain pool and its batch sums, built once per base model whatever the
concept (``pipeline.unlearn.retain_pool``); with ``gradients.retain: pool`` the gradients stage
corrects them for each request, and compare times SLUG with them beside the fresh pass."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from pipeline.datasets.shards import data_shards
from pipeline.entry import run
from pipeline.io import atomic_dir
from pipeline.models.factory import from_params
from pipeline.params import Params
from pipeline.progress import progress
from pipeline.sets.build import build_pool
from pipeline.unlearn import retain_pool as RP


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    bundle = from_params(p.model, p.device)
    with atomic_dir(p.pool.out) as tmp:
        start = time.time()
        data_manifest = build_pool(data_shards(p.data), p.pool.n, p.seed, tmp / RP.DATA,
                                   p.data.on_damaged_shard, p.data.max_damaged_share,
                                   p.data.workers)
        data = RP.load_data(tmp, bundle.preprocess, bundle.tokenizer)
        load_s = time.time() - start
        start = time.time()
        pool = RP.build(bundle.model, data, p.gradients.batch_size, progress)
        elapsed = time.time() - start
        RP.save(tmp, pool, {"batch_size": p.gradients.batch_size, "time_s": round(elapsed, 2),
                            "load_s": round(load_s, 2), "model": bundle.describe(),
                            "data": data_manifest, "seed": p.seed, "torch": torch.__version__})
    print(f"retain_pool: {len(data.images)} pairs in {len(pool.bounds)} batches; gradient pass "
          f"{elapsed:.1f}s (sampling and decoding {load_s:.1f}s), once per base model -> "
          f"{Path(p.pool.out)}")


if __name__ == "__main__":
    run(main)
