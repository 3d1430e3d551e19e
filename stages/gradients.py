"""Stage gradients: one pass over the forget-search and retain sets, each in two halves (their
weighted sum is the full gradient: ``pipeline.unlearn.reliability``); per-layer statistics with
each half's importance and alignment; the forget gradients a ranking may pick, as safetensors.
``gradients.retain: pool``: the retain pool's gradient, corrected for the concept's own pairs.
``gradients.nproc`` > 1: rerun under torchrun, batches shared out (``pipeline.distributed``)."""

from __future__ import annotations

import time

import torch

from pipeline import distributed as D
from pipeline.entry import run
from pipeline.models.factory import from_params, resolve_device
from pipeline.models.structure import state_dict_hash
from pipeline.params import Params
from pipeline.sets.build import load_split, split_hashes
from pipeline.unlearn import reliability as R
from pipeline.unlearn import retain_pool as RP
from pipeline.unlearn import slug
from pipeline.unlearn import workflow as W


def main(p: Params) -> None:
    D.relaunch(p.gradients.nproc, resolve_device(p.device))
    with D.joined(resolve_device(p.device)):
        gradients(p)


def gradients(p: Params) -> None:  # every process; rank 0 writes
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
    if not D.is_main():
        return
    rows = R.stats_table(bundle.model, g, p.gradients.exclude)
    keep = slug.layers_to_store(rows)
    W.save_gradients(
        p.gradients.out, g, rows, keep, retain=p.gradients.retain,
        model={**bundle.describe(), "state_dict_sha256": state_dict_hash(bundle.model)},
        retain_pool=pooled and pooled.cost(), processes=D.rank_world()[1], seed=p.seed,
        data={**split_hashes(sets, ("forget_search",)), **data}, time_s=round(elapsed, 2))
    if pooled:
        print(f"gradients: {pooled.line()}")
    print(f"gradients: {g.n_forget} forget / {g.n_retain} retain pairs in {elapsed:.1f}s; "
          f"L_f {g.forget_loss:.4f}, L_r {g.retain_loss:.4f}; stored {len(keep)} of "
          f"{sum(r['candidate'] for r in rows)} candidate layers")


if __name__ == "__main__":
    run(main)
