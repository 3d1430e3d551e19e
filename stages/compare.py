"""Stage compare: SLUG and the baselines side by side, on the same sets, by the same evaluation.

SLUG is re-run end to end in this process (gradient pass, ranking, step search) so that its time
is measured beside the baselines' on the same machine state; its held-out metrics are those of the
unlearn stage's patch (the artifact users ship), and the re-run must pick the same layer and step.
Every baseline starts from the base weights, stops on SLUG's search criterion, and is evaluated on
the held-out sets by ``pipeline.evaluate.unlearning.evaluate``.
"""

from __future__ import annotations

import csv
import io
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from pipeline.datasets.pairs import load_pairs
from pipeline.datasets.shards import Shard
from pipeline.evaluate.unlearning import evaluate
from pipeline.io import atomic_path, sha256_file, write_json, write_text
from pipeline.measure import Meter
from pipeline.models import build, state_dict_hash
from pipeline.params import Params
from pipeline.progress import progress
from pipeline.report.comparison import plot_compare
from pipeline.unlearn import patch as patch_mod
from pipeline.unlearn.baselines import LABELS, BaselineData, NullLog, StopRule, run_method
from pipeline.unlearn.baselines.iterative import IterativeConfig
from pipeline.unlearn.baselines.ssd import SSDConfig
from pipeline.unlearn.slug import unlearn as slug_unlearn
from pipeline.unlearn.trials import TrialScorer

from ._common import eval_inputs, kinds_and_target, run

METRICS = Path("metrics/compare.json")
TABLE = Path("plots/compare/methods.csv")
CURVES = Path("plots/compare/curves.csv")
FIGURE = Path("plots/compare/pareto.png")
LIVE = Path("plots/compare/live")
ITERATIVE = ("ft", "ga", "gaft", "salun_ref")


def _live(method: str):
    """A dvclive logger that leaves dvc.yaml alone; without a usable git repo, no curve log."""
    try:
        from dvclive import Live

        return Live(str(LIVE / method), dvcyaml=None, save_dvc_exp=False, report=None)
    except Exception as exc:  # noqa: BLE001 - dvclive raises scmrepo errors outside git
        print(f"compare: no dvclive log for {method} ({exc}); curves.csv still has it",
              file=sys.stderr)
        return NullLog()


def _settings(p: Params, method: str):
    b = p.baselines
    if method == "ssd":
        return SSDConfig(b.ssd.alpha, b.ssd.lam, b.ssd.batch_size, b.ssd.max_evals)
    return IterativeConfig(lr=getattr(b.lr, method), epochs=b.epochs, batch_size=b.batch_size,
                           weight_decay=b.weight_decay, checks_per_epoch=b.checks_per_epoch,
                           seed=p.seed, mask_fraction=b.salun_mask_fraction)


def _row(method: str, res: dict, **cost) -> dict:
    return {"method": method, "label": LABELS[method],
            "forget_top1": res["forget"]["top1"], "forget_top5": res["forget"]["top5"],
            "forget_split_top1": res["forget_split"]["top1"],
            "celeba_top1": res["celeba"]["top1"], "imagenet_top1": res["imagenet"]["top1"],
            "mia": res.get("mia", {}).get("mean"), **cost}


def _changed_share(model, base: dict[str, torch.Tensor]) -> float:
    changed = sum(int((p.detach() != base[k]).sum()) for k, p in model.named_parameters())
    return changed / sum(p.numel() for p in model.parameters())


@torch.no_grad()
def _restore(model, base: dict[str, torch.Tensor]) -> None:
    for k, prm in model.named_parameters():
        prm.copy_(base[k])


def main(p: Params) -> None:
    torch.manual_seed(p.seed)
    m = p.model
    bundle = build(m.name, m.pretrained, m.quick_gelu, m.precision, p.device)
    model, tok = bundle.model, bundle.tokenizer
    device = next(model.parameters()).device
    patch = patch_mod.load(p.unlearn.out)
    patch_mod.check_base(model, patch)  # before any heavy work
    kinds, kind, concept_idx = kinds_and_target(p)
    sdir = Path(p.sets.out)
    fs = load_pairs([Shard(sdir / "forget_search.tar")], bundle.preprocess, tok)
    retain = load_pairs([Shard(sdir / "retain.tar")], bundle.preprocess, tok)
    rv = load_pairs([Shard(sdir / "retain_val.tar")], bundle.preprocess, tok)
    x = eval_inputs(p, bundle)
    base = {k: v.detach().clone() for k, v in model.named_parameters()}
    base_hash = state_dict_hash(model)
    u, seeds = p.unlearn, p.evaluate.mia_seeds

    def scorer(cached: bool):
        return TrialScorer(model, tok, kinds, kind, concept_idx, fs, rv, topk=u.topk,
                           cached=cached)

    rows, curves = [], []
    rows.append(_row("original", evaluate(model, tok, x, seeds)))

    # SLUG, timed end to end; the shipped patch is what gets evaluated
    with Meter(device) as meter:
        _, chosen, _ = slug_unlearn(
            model, fs, retain, scorer(True), batch_size=p.gradients.batch_size,
            exclude=p.gradients.exclude, signed=p.rank.alignment == "signed",
            fronts=p.rank.fronts, rule=p.rank.rule, target=u.target, max_evals=u.max_evals,
            scale0=u.scale0, progress=progress)
    same = chosen is not None and [chosen.layer] == patch.manifest["layers"] and \
        abs(chosen.result.best.lam - patch.manifest["lambda"]) <= 1e-6 * patch.manifest["lambda"]
    originals = patch_mod.apply(model, patch)
    slug_res = evaluate(model, tok, x, seeds)
    patch_mod.revert(model, originals)
    storage = sum((Path(p.unlearn.out) / f).stat().st_size
                  for f in (patch_mod.TENSORS, patch_mod.MANIFEST))
    rows.append(_row("slug", slug_res, reached=chosen is not None,
                     time_to_forget_s=meter.time_s if chosen else None, time_s=meter.time_s,
                     peak_mem_mb=meter.peak_bytes / 2**20, storage_mb=storage / 2**20,
                     changed_share=patch.numel / sum(t.numel() for t in base.values()),
                     epochs=None, rerun_matches_patch=same))
    assert state_dict_hash(model) == base_hash, "SLUG's trials leaked into the base weights"

    out_dir = Path(p.baselines.out)
    shutil.rmtree(LIVE, ignore_errors=True)  # no curves left over from another concept
    for method in p.baselines.methods:
        _restore(model, base)
        torch.manual_seed(p.seed)
        live = _live(method)
        rule = StopRule(scorer(False), u.target, live)
        print(f"compare: {LABELS[method]}", file=sys.stderr)
        with Meter(device) as meter:
            outcome = run_method(method, model, BaselineData(fs, retain), _settings(p, method),
                                 rule, progress)
        if hasattr(live, "end"):
            live.end()
        res = evaluate(model, tok, x, seeds)
        ckpt = out_dir / f"{method}.safetensors"
        with atomic_path(ckpt, ".safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                      str(tmp))
        rows.append(_row(method, res, reached=outcome.reached,
                         time_to_forget_s=outcome.time_to_forget_s, time_s=meter.time_s,
                         peak_mem_mb=meter.peak_bytes / 2**20,
                         storage_mb=ckpt.stat().st_size / 2**20,
                         changed_share=_changed_share(model, base), epochs=outcome.epochs,
                         **outcome.extra))
        curves += [{"method": method, "label": LABELS[method], "step": c.step, "epoch": c.epoch,
                    "elapsed_s": c.elapsed_s, "forget": c.forget, "retain": c.retain}
                   for c in outcome.checks]
    _restore(model, base)

    by = {r["method"]: r for r in rows}
    slug = by["slug"]
    fastest = min((r for r in rows if r["method"] in ITERATIVE and r.get("time_to_forget_s")),
                  key=lambda r: r["time_to_forget_s"], default=None)
    ratio = (fastest["time_to_forget_s"] / slug["time_to_forget_s"]
             if fastest and slug["time_to_forget_s"] else None)
    at_target = {r["method"]: {"forget_top1": r["forget_top1"], "celeba_top1": r["celeba_top1"],
                               "imagenet_top1": r["imagenet_top1"]}
                 for r in rows if r["method"] != "original" and r["forget_top1"] <= 0.05}
    write_json(METRICS, {
        "concept": p.concept, "kind": kind, "target": u.target, "topk": u.topk,
        "methods": {r["method"]: {k: v for k, v in r.items() if k != "method"} for r in rows},
        "time_ratio": {"fastest_iterative": fastest["method"] if fastest else None,
                       "iterative_over_slug": ratio,
                       "per_method": {r["method"]: r["time_to_forget_s"] / slug["time_to_forget_s"]
                                      for r in rows if r.get("time_to_forget_s")
                                      and slug["time_to_forget_s"]}},
        "utility_at_forget_le_0.05": at_target,
        "storage_ratio_full_over_patch": max((r["storage_mb"] for r in rows if r["method"] in
                                              ITERATIVE), default=0) / slug["storage_mb"],
        "seed": p.seed, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "data": {f: sha256_file(sdir / f) for f in ("forget_search.tar", "retain.tar",
                                                   "retain_val.tar", "forget_test.tar")},
        "base_model_sha256": base_hash,
    })
    fields = ["method", "label", "forget_top1", "forget_top5", "forget_split_top1", "celeba_top1",
              "imagenet_top1", "mia", "reached", "time_to_forget_s", "time_s", "peak_mem_mb",
              "storage_mb", "changed_share", "epochs"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text(TABLE, buf.getvalue())
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(curves[0]) if curves else ["method"])
    w.writeheader()
    w.writerows(curves)
    write_text(CURVES, buf.getvalue())
    plot_compare(rows, curves, FIGURE, u.target,
                 p.concept)
    for r in rows:
        t = r.get("time_to_forget_s")
        print(f"compare: {r['label']:>12}: forget {r['forget_top1']:.3f}  celeba "
              f"{r['celeba_top1']:.3f}  imagenet {r['imagenet_top1']:.3f}  time-to-forget "
              f"{'-' if t is None else f'{t:.1f}s'}")
    if ratio is not None:
        print(f"compare: the fastest iterative baseline ({LABELS[fastest['method']]}) took "
              f"{ratio:.2f}x SLUG's time to forget")


if __name__ == "__main__":
    run(main)
