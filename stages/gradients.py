"""Stage gradients: one pass over the forget-search and retain sets, each in two halves (the full
gradient is their weighted sum: ``pipeline.unlearn.reliability``); per-layer statistics, with each
half's importance and alignment; the forget gradients of the layers a ranking may pick
(``slug.layers_to_store``), as safetensors. With ``gradients.retain: pool`` the retain gradient is
the retain pool's, corrected for the concept's own pairs (``pipeline.unlearn.retain_pool``)."""

from __future__ import annotations

import time

import torch

from pipeline.entry import run
from pipeline.io import atomic_dir, save_tensors, write_json
from pipeline.models.factory import from_params
from pipeline.models.structure import state_dict_hash
from pipeline.params import Params
from pipeline.sets.build import load_split, split_hashes
from pipeline.unlearn import reliability as R
from pipeline.unlearn import retain_pool as RP
from pipeline.unlearn import slug
from pipeline.unlearn import workflow as W


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    bundle = from_params(p.model, p.device)
    sets = p.sets.out
    forget = load_split(sets, "forget_search", bundle.preprocess, bundle.tokenizer)
    retain, data = RP.retain_input(p.gradients.retain, sets, p.pool.out, bundle.preprocess,
                                   bundle.tokenizer)
    start = time.time()
    g = R.split_pass(bundle.model, forget, retain, p.gradients.batch_size,
                     max_forget=p.gradients.max_forget)
    elapsed = time.time() - start
    pooled = getattr(retain, "last", None)  # a PoolRequest's cost
    rows = R.stats_table(bundle.model, g, p.gradients.exclude)
    keep = slug.layers_to_store(rows)
    with atomic_dir(p.gradients.out) as tmp:
        save_tensors(tmp / W.GRADS, {k: g.forget[k] for k in keep})
        write_json(tmp / W.LAYERS, rows)
        write_json(tmp / "manifest.json", {
            "model": {**bundle.describe(), "state_dict_sha256": state_dict_hash(bundle.model)},
            "sign": "stored = grad of L_f = mean(1 - cos); unlearn with theta + lambda * grad, "
                    "lambda > 0", "forget_loss": g.forget_loss, "retain_loss": g.retain_loss,
            "n_forget": g.n_forget, "n_retain": g.n_retain, "halves": g.describe(),
            "stored_layers": keep, "retain": p.gradients.retain,
            "retain_pool": pooled and pooled.cost(),
            "data": {**split_hashes(sets, ("forget_search",)), **data},
            "time_s": round(elapsed, 2), "seed": p.seed})
    if pooled:
        print(f"gradients: {pooled.line()}")
    print(f"gradients: {g.n_forget} forget / {g.n_retain} retain pairs in {elapsed:.1f}s; "
          f"L_f {g.forget_loss:.4f}, L_r {g.retain_loss:.4f}; stored {len(keep)} of "
          f"{sum(r['candidate'] for r in rows)} candidate layers")


if __name__ == "__main__":
    run(main)
