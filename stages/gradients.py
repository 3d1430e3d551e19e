"""Stage gradients: one pass over the forget-search and retain sets; per-layer statistics; the
forget gradients of the candidate layers (Pareto-front layers under either alignment, and the
naive max-importance layer) as safetensors with a manifest."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from pipeline.datasets.pairs import load_pairs
from pipeline.datasets.shards import Shard
from pipeline.io import atomic_path, sha256_file, write_json
from pipeline.models import build, state_dict_hash
from pipeline.params import Params
from pipeline.unlearn import layers as L
from pipeline.unlearn.gradients import gradient_pass

from ._common import run


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    m = p.model
    bundle = build(m.name, m.pretrained, m.quick_gelu, m.precision, p.device)
    sets = Path(p.sets.out)
    forget = load_pairs([Shard(sets / "forget_search.tar")], bundle.preprocess, bundle.tokenizer)
    retain = load_pairs([Shard(sets / "retain.tar")], bundle.preprocess, bundle.tokenizer)
    start = time.time()
    g = gradient_pass(bundle.model, forget, retain, p.gradients.batch_size)
    elapsed = time.time() - start

    rows = L.stats_table(bundle.model, g.forget, g.retain, p.gradients.exclude)
    cands = [r for r in rows if r["candidate"]]
    keep = {L.naive_choice(cands)}
    for signed in (False, True):  # whatever rank.alignment and rank.fronts (up to 3) choose
        keep |= set(L.select(L.annotate([dict(r) for r in cands], signed, fronts=3), "front"))
    out = Path(p.gradients.out)
    with atomic_path(out / "forget_grads.safetensors", ".safetensors") as tmp:
        save_file({k: g.forget[k].detach().cpu().contiguous() for k in sorted(keep)}, str(tmp))
    write_json(out / "layers.json", rows)
    write_json(out / "manifest.json", {
        "model": {**bundle.describe(), "state_dict_sha256": state_dict_hash(bundle.model)},
        "sign": "stored = grad of L_f = mean(1 - cos); unlearn with theta + lambda * grad, lambda > 0",
        "forget_loss": g.forget_loss, "retain_loss": g.retain_loss,
        "n_forget": g.n_forget, "n_retain": g.n_retain, "stored_layers": sorted(keep),
        "data": {f: sha256_file(sets / f) for f in ("forget_search.tar", "retain.tar")},
        "time_s": round(elapsed, 2), "seed": p.seed,
    })
    print(f"gradients: {g.n_forget} forget / {g.n_retain} retain pairs in {elapsed:.1f}s; "
          f"L_f {g.forget_loss:.4f}, L_r {g.retain_loss:.4f}; stored {len(keep)} of "
          f"{len(cands)} candidate layers")


if __name__ == "__main__":
    run(main)
