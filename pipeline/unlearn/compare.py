"""SLUG and the baselines side by side, on the same sets, by the same evaluation, and held against the retrain oracle when there is one.

SLUG is re-run end to end (gradient pass, ranking, step search) through the one entry point, so
that its time is measured beside the baselines' on the same machine state; its held-out metrics
are those of the shipped patch, and the re-run must pick the patch's layer and step. Every
baseline starts from the base weights, stops on SLUG's search criterion (the same scorer on the
same search data), and is evaluated on the held-out sets by ``evaluate.unlearning.evaluate``.

The retrain oracle (a model pretrained without the concept's pairs, ``pipeline.train.oracle``) is
what an unlearning should look like. Every row then gets its distance to the oracle: the gaps
(method - oracle) of each held-out accuracy and MIA number, and ``cosine_w1``, the Wasserstein-1
distance between the forget test pairs' paired cosines under the method and under the oracle
(0: the forget pairs look exactly as they do to a model that never saw them).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..evaluate.unlearning import EvalInputs, evaluate
from ..io import save_tensors
from ..measure import Meter
from ..models.structure import state_dict_hash
from ..params import (
    ITERATIVE_METHODS,
    BaselinesParams,
    GradientsParams,
    RankParams,
    UnlearnParams,
)
from . import patch as patch_mod
from . import slug
from .baselines import LABELS, BaselineData, NullLog, StopRule, run_method
from .baselines.iterative import IterativeConfig
from .baselines.ssd import SSDConfig

FIELDS = ["method", "label", "forget_top1", "forget_top5", "forget_split_top1", "celeba_top1",
          "imagenet_top1", "mia", "mia_efficacy", "reached", "time_to_forget_s", "time_s", "one_time_s",
          "peak_mem_mb",
          "storage_mb", "changed_share", "epochs", "gap_forget_top1", "gap_forget_top5",
          "gap_celeba_top1", "gap_imagenet_top1", "gap_mia", "gap_mia_efficacy", "cosine_w1"]
HASHED = ("forget_search", "retain", "retain_val", "forget_test")  # the splits compare reads
GAPS = ("forget_top1", "forget_top5", "celeba_top1", "imagenet_top1", "mia", "mia_efficacy")
CURVE_FIELDS = ["method", "label", "step", "epoch", "elapsed_s", "forget", "retain"]


def baseline_settings(b: BaselinesParams, method: str, seed: int):
    """An ``SSDConfig`` or ``IterativeConfig`` from the ``baselines`` params group."""
    if method == "ssd":
        return SSDConfig(b.ssd.alpha, b.ssd.lam, b.ssd.batch_size, b.ssd.max_evals)
    return IterativeConfig(lr=getattr(b.lr, method), epochs=b.epochs, batch_size=b.batch_size,
                           weight_decay=b.weight_decay, checks_per_epoch=b.checks_per_epoch,
                           seed=seed, mask_fraction=b.salun_mask_fraction)


def live_log(folder: Path):
    """A dvclive logger that leaves dvc.yaml alone; without a usable git repo, no curve log."""
    try:
        from dvclive import Live

        return Live(str(folder), dvcyaml=None, save_dvc_exp=False, report=None)
    except Exception as exc:  # noqa: BLE001 - dvclive raises scmrepo errors outside git
        print(f"compare: no dvclive log in {folder} ({exc}); the curves table still has it",
              file=sys.stderr)
        return NullLog()


def _row(method: str, res: dict, **cost) -> dict:
    return {"method": method, "label": LABELS[method],
            "forget_top1": res["forget"]["top1"], "forget_top5": res["forget"]["top5"],
            "forget_split_top1": res["forget_split"]["top1"],
            "celeba_top1": res["celeba"]["top1"], "imagenet_top1": res["imagenet"]["top1"],
            "mia": res.get("mia", {}).get("mean"), "mia_efficacy": res.get("mia_efficacy"),
            **cost}


def w1(a: torch.Tensor, b: torch.Tensor) -> float:
    """Wasserstein-1 distance between two samples of one variable (their quantile functions'
    mean absolute difference, on a common grid when the sizes differ)."""
    a, b = torch.sort(a.double().flatten())[0], torch.sort(b.double().flatten())[0]
    if len(a) != len(b):
        q = (torch.arange(1000, dtype=torch.float64) + 0.5) / 1000
        a, b = torch.quantile(a, q), torch.quantile(b, q)
    return float((a - b).abs().mean())


def oracle_gaps(rows: list[dict], cosines: dict[str, torch.Tensor]) -> None:
    """Each row's distance to the ``oracle`` row (in place): ``gap_<metric>`` = method - oracle,
    and ``cosine_w1`` against the oracle's forget-pair cosines."""
    oracle = next(r for r in rows if r["method"] == "oracle")
    for r in rows:
        for k in GAPS:
            r[f"gap_{k}"] = None if r.get(k) is None or oracle.get(k) is None else r[k] - oracle[k]
        r["cosine_w1"] = w1(cosines[r["method"]], cosines["oracle"])


def _changed_share(model, base: dict[str, torch.Tensor]) -> float:
    changed = sum(int((p.detach() != base[k]).sum()) for k, p in model.named_parameters())
    return changed / sum(p.numel() for p in model.parameters())


@torch.no_grad()
def _restore(model, base: dict[str, torch.Tensor]) -> None:
    for k, prm in model.named_parameters():
        prm.copy_(base[k])


@dataclass
class SlugSettings:
    search: slug.SearchConfig
    rank: slug.RankConfig
    batch_size: int
    exclude: list[str]
    max_forget: int | None
    selectivity: slug.Selectivity  # the shipped patch's (``unlearn.selectivity``)

    @classmethod
    def from_params(cls, u: UnlearnParams, r: RankParams, g: GradientsParams) -> "SlugSettings":
        return cls(slug.SearchConfig(u.target, u.max_evals, u.scale0, u.rtol, u.prune),
                   slug.RankConfig(r.alignment == "signed", r.fronts, r.rule), g.batch_size,
                   g.exclude, g.max_forget, slug.Selectivity(u.selectivity, u.energy))


@dataclass
class Comparison:
    rows: list[dict]
    curves: list[dict]
    slug_matches_patch: bool


def run_comparison(model, tokenizer, data: BaselineData, scorer: Callable[[bool], slug.Scorer],
                   x: EvalInputs, patch: patch_mod.Patch, patch_bytes: int, s: SlugSettings,
                   methods: list[str], settings: Callable[[str], object], mia_seeds: int,
                   checkpoints: str | Path, live: Path, seed: int, progress=lambda x, **k: x,
                   oracle=None, oracle_time_s: float | None = None, pool=None,
                   pool_time_s: float | None = None, variants: Sequence[str] = ()
                   ) -> Comparison:
    """``scorer(cached)`` makes a fresh search scorer; ``settings(method)`` a baseline's config.
    Each baseline's weights are written to ``checkpoints/<method>.safetensors`` and its stop-rule
    checks logged under ``live/<method>``. ``oracle`` (a model) adds the oracle row and every
    row's distance to it. ``pool`` (a ``retain_pool.PoolRequest``) adds ``slug_pool``: SLUG with
    the amortised retain gradient, its per-request time beside the pool's one-time
    ``pool_time_s``. Each selectivity mode of ``variants`` adds ``slug_<mode>``: SLUG with that
    step (``pipeline.unlearn.selective``, projected on the retain split). The model is left at
    its base weights."""
    device = next(model.parameters()).device
    base = {k: v.detach().clone() for k, v in model.named_parameters()}
    base_hash = state_dict_hash(model)
    cosines = {}

    def assess(method: str, m=model) -> dict:
        res = evaluate(m, tokenizer, x, mia_seeds, cosines=True)
        cosines[method] = res.pop("forget_cosines")
        return res

    rows, curves = [_row("original", assess("original"))], []
    if oracle is not None:
        rows.append(_row("oracle", assess("oracle", oracle), time_s=oracle_time_s))

    with Meter(device) as meter:  # SLUG, timed end to end; the shipped patch is what is evaluated
        res = slug.unlearn(model, data.forget, data.retain, scorer(True), s.search, s.rank,
                           batch_size=s.batch_size, exclude=s.exclude,
                           fallback=slug.strongest, max_forget=s.max_forget,
                           selectivity=s.selectivity, progress=progress)  # as the unlearn stage
    m = patch.manifest
    same = res.trial is not None and [res.layer] == m["layers"] and \
        abs(res.lam - m["lambda"]) <= 1e-6 * m["lambda"]
    originals = patch_mod.apply(model, patch)
    slug_res = assess("slug")
    patch_mod.revert(model, originals)
    rows.append(_row("slug", slug_res, reached=res.reached,
                     time_to_forget_s=meter.time_s if res.reached else None, time_s=meter.time_s,
                     peak_mem_mb=meter.peak_bytes / 2**20, storage_mb=patch_bytes / 2**20,
                     changed_share=patch.numel / sum(t.numel() for t in base.values()),
                     epochs=None, rerun_matches_patch=same))
    def variant(method: str, retain, sel: slug.Selectivity, **extra) -> slug.Slug:
        """A SLUG run beside the shipped one (another retain gradient or step), its own edit
        evaluated into its row."""
        with Meter(device) as meter:
            r = slug.unlearn(model, data.forget, retain, scorer(True), s.search, s.rank,
                             batch_size=s.batch_size, exclude=s.exclude, fallback=slug.strongest,
                             max_forget=s.max_forget, selectivity=sel,
                             projection_set=data.retain, progress=progress)
        edit = r.patch(model, {"base_model_sha256": base_hash})
        originals = patch_mod.apply(model, edit)
        res_v = assess(method)
        patch_mod.revert(model, originals)
        rows.append(_row(method, res_v, reached=r.reached,
                         time_to_forget_s=meter.time_s if r.reached else None,
                         time_s=meter.time_s, peak_mem_mb=meter.peak_bytes / 2**20,
                         storage_mb=patch_bytes / 2**20,
                         changed_share=edit.numel / sum(t.numel() for t in base.values()),
                         epochs=None, layer=r.layer, rel_step=r.rel_step,
                         evaluations=r.evaluations, **extra))
        return r

    if pool is not None:  # the same run with the amortised retain gradient
        variant("slug_pool", pool, s.selectivity, one_time_s=pool_time_s)
        c = pool.last
        rows[-1].update(retain_pairs=c.n, pool_batches_recomputed=c.passes,
                        pool_batches=c.batches)
    for mode in (m for m in variants if m != s.selectivity.mode):  # on the fresh retain gradient
        sel = slug.Selectivity(mode, s.selectivity.energy)
        r = variant(sel.method, data.retain, sel)
        rows[-1]["selectivity"] = r.selectivity
    if state_dict_hash(model) != base_hash:
        raise RuntimeError("SLUG's trials leaked into the base weights")

    shutil.rmtree(live, ignore_errors=True)  # no curves left over from another concept
    for method in methods:
        _restore(model, base)
        torch.manual_seed(seed)
        log = live_log(live / method)
        rule = StopRule(scorer(False), s.search.target, log)
        print(f"compare: {LABELS[method]}", file=sys.stderr)
        with Meter(device) as meter:
            outcome = run_method(method, model, data, settings(method), rule, progress)
        if hasattr(log, "end"):
            log.end()
        res_m = assess(method)
        ckpt = Path(checkpoints) / f"{method}.safetensors"
        save_tensors(ckpt, model.state_dict())
        rows.append(_row(method, res_m, reached=outcome.reached,
                         time_to_forget_s=outcome.time_to_forget_s, time_s=meter.time_s,
                         peak_mem_mb=meter.peak_bytes / 2**20,
                         storage_mb=ckpt.stat().st_size / 2**20,
                         changed_share=_changed_share(model, base), epochs=outcome.epochs,
                         **outcome.extra))
        curves += [{"method": method, "label": LABELS[method], "step": c.step, "epoch": c.epoch,
                    "elapsed_s": c.elapsed_s, "forget": c.forget, "retain": c.retain}
                   for c in outcome.checks]
    _restore(model, base)
    if oracle is not None:
        oracle_gaps(rows, cosines)
    return Comparison(rows, curves, same)


def summary(rows: list[dict]) -> dict:
    """The methods' rows, the time ratio against the fastest iterative baseline, utility at
    forget <= 0.05, and the storage ratio."""
    by = {r["method"]: r for r in rows}
    slug_t = by["slug"]["time_to_forget_s"]
    fastest = min((r for r in rows if r["method"] in ITERATIVE_METHODS and r.get("time_to_forget_s")),
                  key=lambda r: r["time_to_forget_s"], default=None)
    ratio = fastest["time_to_forget_s"] / slug_t if fastest and slug_t else None
    pool_t = by.get("slug_pool", {}).get("time_to_forget_s")
    return {
        "methods": {r["method"]: {k: v for k, v in r.items() if k != "method"} for r in rows},
        "time_ratio": {"fastest_iterative": fastest["method"] if fastest else None,
                       "iterative_over_slug": ratio,
                       "iterative_over_slug_pool": fastest["time_to_forget_s"] / pool_t
                       if fastest and pool_t else None,
                       "per_method": {r["method"]: r["time_to_forget_s"] / slug_t
                                      for r in rows if r.get("time_to_forget_s") and slug_t}},
        "utility_at_forget_le_0.05": {
            r["method"]: {"forget_top1": r["forget_top1"], "celeba_top1": r["celeba_top1"],
                          "imagenet_top1": r["imagenet_top1"]}
            for r in rows if r["method"] not in ("original", "oracle") and r["forget_top1"] <= 0.05},
        "storage_ratio_full_over_patch": max((r["storage_mb"] for r in rows
                                              if r["method"] in ITERATIVE_METHODS), default=0)
        / by["slug"]["storage_mb"],
    }


def lines(rows: list[dict]) -> list[str]:
    """One line per method for the log."""
    out = []
    for r in rows:
        t = r.get("time_to_forget_s")
        out.append(f"compare: {r['label']:>12}: forget {r['forget_top1']:.3f}  celeba "
                   f"{r['celeba_top1']:.3f}  imagenet {r['imagenet_top1']:.3f}  time-to-forget "
                   f"{'-' if t is None else f'{t:.1f}s'}")
    return out
