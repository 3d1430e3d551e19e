"""Stage compare: SLUG beside the baselines, on the same sets (``pipeline.unlearn.compare``)."""

from __future__ import annotations

import torch

from pipeline.entry import metrics_path, plots_dir, run
from pipeline.evaluate.sets import scorer_kinds, standard_sets
from pipeline.evaluate.unlearning import eval_inputs
from pipeline.io import write_csv, write_json
from pipeline.models.factory import from_params
from pipeline.models.structure import state_dict_hash
from pipeline.params import Params
from pipeline.progress import progress
from pipeline.report.comparison import plot_compare
from pipeline.sets.build import load_split, read_concept, split_hashes
from pipeline.train import oracle
from pipeline.unlearn import compare as C
from pipeline.unlearn import patch as patch_mod
from pipeline.unlearn import retain_pool as RP
from pipeline.unlearn.baselines import BaselineData
from pipeline.unlearn.trials import TrialScorer


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    bundle, u, b, d, sets = from_params(p.model, p.device), p.unlearn, p.baselines, p.data, p.sets
    model, tok = bundle.model, bundle.tokenizer
    patch = patch_mod.load(u.out)
    patch_mod.check_base(model, patch)  # before any heavy work
    concept = read_concept(sets.out)
    evs = standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas, p.eval.templates)
    kinds = scorer_kinds(evs)
    fs, retain, rv = (load_split(sets.out, s, bundle.preprocess, tok)
                      for s in ("forget_search", "retain", "retain_val"))
    x = eval_inputs(evs, bundle, concept, sets.out, sets.n_nonmembers > 0, d.celeba,
                    p.evaluate.frequent, p.evaluate.imagenet_images, p.seed, p.evaluate.batch_size)
    base_hash, plots = state_dict_hash(model), plots_dir("compare")
    orc, manifest = oracle.load(p.oracle.out, concept.label, p.model.quick_gelu, p.device)
    pool, pool_meta = RP.open_request(p.pool.out, bundle.preprocess, tok, concept)
    cmp = C.run_comparison(
        model, tok, BaselineData(fs, retain),
        lambda cached: TrialScorer(model, tok, kinds, concept, fs, rv, u.topk, cached, u.shortcut),
        x, patch, patch_mod.size_bytes(u.out), C.SlugSettings.from_params(u, p.rank, p.gradients),
        b.methods, lambda method: C.baseline_settings(b, method, p.seed), p.evaluate.mia_seeds,
        b.out, plots / "live", p.seed, progress, orc and orc.model, manifest.get("train_s"),
        pool, pool_meta["time_s"], b.selective)
    write_json(metrics_path("compare"), {
        "concept": concept.label, "kind": concept.kind, "target": u.target, "topk": u.topk,
        **C.summary(cmp.rows), "seed": p.seed, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "base_model_sha256": base_hash, "oracle": manifest,
        "data": {**split_hashes(sets.out, C.HASHED), RP.DATA: pool_meta["data"]["sha256"]}})
    write_csv(plots / "methods.csv", cmp.rows, C.FIELDS)
    write_csv(plots / "curves.csv", cmp.curves, C.CURVE_FIELDS)
    plot_compare(cmp.rows, cmp.curves, plots / "pareto.png", u.target, u.topk, concept.label)
    print("\n".join(C.lines(cmp.rows)))


if __name__ == "__main__":
    run(main)
