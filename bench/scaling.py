"""Benchmark: time to forget as the forget set grows x1, x4, x16 on the tiny world (measured).

The sizes come from ``filter.max_matches`` (the filter keeps the first N matches in shard order):
Elon Musk has 557 matches in the tiny world, so N = 557/16 x (1, 4, 16), rounded: 35, 139, 557;
``sets.test_fraction`` holds half of them out, so the forget-*search* split (what every method
sees) is about half of N (the recorded ``forget_search_pairs``). For each size, the pipeline's own
stages build the sets in a scratch folder (``python -m stages.filter``, ``stages.build_sets`` with
this repository's params.yaml, the concept, ``filter.max_matches`` and the outputs changed; data/
and models/ are links to this repository's). Then, in this process and on one loaded model (the
base weights restored before every run), each method's time to forget, as the compare stage
measures it:

* SLUG: ``slug.unlearn`` (gradient pass, ranking, step search) with the committed unlearn / rank /
  gradients params, its ``TrialScorer(cached=True)`` built inside the timed region (as
  ``compare.run_comparison``); the gradient pass is also timed on its own once per size, and the
  search time and evaluations come from the result (the breakdown);
* GA, GAFT, SalUn (ref.): ``baselines.run_method`` at the committed ``baselines.lr`` with a
  ``StopRule`` on the same search criterion (``TrialScorer(cached=False)``), checked every
  ``CHECK_EVERY`` optimizer steps (``IterativeConfig.check_every``), so no method pays for checks its
  steps did not call for. Time to forget runs from the method's start to the first passing check.

Each timing is repeated (median reported, every repeat recorded). Run after the tiny world and the
tiny CLIP exist (``dvc repro tiny/dvc.yaml``); about 10-15 min on 2 CPU cores:

    python -m bench.scaling            # writes bench/scaling.json and docs/figures/scaling.png
    python -m bench.scaling --quick    # 1 repeat, smallest size only, to a temporary folder
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench.lean_search import scratch_params
from pipeline import params as params_mod
from pipeline.datasets.shards import list_shards
from pipeline.evaluate.sets import scorer_kinds, standard_sets
from pipeline.io import atomic_path, sha256_file, sha256_tree, write_json
from pipeline.models.factory import from_params
from pipeline.sets.build import MANIFEST, build_pool, load_split, read_concept, split_hashes
from pipeline.sets.match import ConceptMatcher
from pipeline.unlearn import compare as C
from pipeline.unlearn import retain_pool as RP
from pipeline.unlearn import slug
from pipeline.unlearn.baselines import LABELS, BaselineData, StopRule, iterative, run_method
from pipeline.unlearn.gradients import gradient_pass
from pipeline.unlearn.trials import TrialScorer

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench/scaling.json"
FIGURE = ROOT / "docs/figures/scaling.png"
CONCEPT = "Elon Musk"
MATCHES = 557  # Elon Musk's matches in the tiny world (metrics/filter.json)
SIZES = {"x1": 35, "x4": 139, "x16": 557}  # filter.max_matches: MATCHES / 16 x (1, 4, 16)
METHODS = ("slug", "slug_pool", "ga", "gaft", "salun_ref")
BASELINES = METHODS[2:]
CHECK_EVERY = 2
REPEATS = 3
STAGES = ("filter", "build_sets")
SPLITS = ("forget_search", "retain", "retain_val")


def build(folder: Path, max_matches: int | None, concept: str = CONCEPT) -> dict:
    """The pipeline's filter and build_sets stages for one size (``None``: the committed
    ``filter.max_matches``) and concept, in ``folder``."""
    scratch_params(folder, concept, max_matches)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    for stage in STAGES:
        subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=folder, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    manifest = json.loads((folder / "work/sets" / MANIFEST).read_text())
    return {"max_matches": max_matches,
            "filter_matches": json.loads((folder / "metrics/filter.json").read_text())["matches"],
            "split_sizes": {s: v["n"] for s, v in manifest["splits"].items()},
            "stages_s": round(time.perf_counter() - t, 1)}


class Bench:
    """The loaded model (one for every size) and its base weights."""

    def __init__(self, p):
        self.bundle = from_params(p.model, "cpu")
        self.base = {k: v.detach().clone() for k, v in self.bundle.model.named_parameters()}
        self.data: BaselineData | None = None  # the current size's forget search + retain sets
        self.pool = self.pool_data = None  # the retain pool, built once (``build_pool``)
        self.pool_s: float | None = None

    def build_pool(self, p) -> None:
        """The retain pool as the retain_pool stage builds it; its gradient pass is the one-time
        cost (``pool_s``), shared by every size and concept."""
        folder = Path(tempfile.mkdtemp(prefix="pool_"))
        try:
            build_pool(list_shards(ROOT / p.data.shards), p.pool.n, p.seed, folder / RP.DATA)
            self.pool_data = RP.load_data(folder, self.bundle.preprocess, self.bundle.tokenizer)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.restore()
        t = time.perf_counter()
        self.pool = RP.build(self.bundle.model, self.pool_data, p.gradients.batch_size)
        self.pool_s = time.perf_counter() - t

    @torch.no_grad()
    def restore(self) -> None:
        for k, prm in self.bundle.model.named_parameters():
            prm.copy_(self.base[k])


def _slug(bench: Bench, p, scorer, retain=None) -> dict:
    """``retain``: the retain split (``None``) or a ``retain_pool.PoolRequest``."""
    model, s = bench.bundle.model, C.SlugSettings.from_params(p.unlearn, p.rank, p.gradients)
    data = bench.data
    t = time.perf_counter()
    res = slug.unlearn(model, data.forget, retain or data.retain, scorer(True), s.search, s.rank,
                       batch_size=s.batch_size, exclude=s.exclude, fallback=slug.strongest,
                       max_forget=s.max_forget)  # as compare.run_comparison
    elapsed = time.perf_counter() - t
    extra = {"retain_pairs": retain.last.n, "pool_passes": retain.last.passes,
             "pool_batches": retain.last.batches} if retain is not None else {}
    return {"reached": res.reached, "time_s": elapsed, **extra,
            "time_to_forget_s": elapsed if res.reached else None,
            "evaluations": res.evaluations, "search_s": res.time_s,
            "layer": res.layer if res.chosen else None,
            "rel_step": res.rel_step if res.trial else None,
            "search_retain": res.trial.retain if res.trial else None}


def _baseline(bench: Bench, p, scorer, method: str, check_every: int | None = CHECK_EVERY
              ) -> dict:
    """``check_every``: stop-rule checks every N optimizer steps (``None``: the committed
    ``baselines.checks_per_epoch``, as compare)."""
    cfg = replace(C.baseline_settings(p.baselines, method, p.seed), check_every=check_every)
    rule = StopRule(scorer(False), p.unlearn.target)
    out = run_method(method, bench.bundle.model, bench.data, cfg, rule)
    last = out.checks[-1] if out.checks else None
    return {"reached": out.reached, "time_s": out.time_s, "time_to_forget_s": out.time_to_forget_s,
            "evaluations": len(out.checks), "steps": out.steps, "epochs": out.epochs,
            "lr": cfg.lr, "search_forget": last and last.forget,
            "search_retain": last and last.retain}


def _max_steps(p, method: str, n_forget: int, n_retain: int) -> int:
    """The optimizer steps a run takes when it never stops (``baselines.epochs`` epochs)."""
    gen, bs = torch.Generator(), p.baselines.batch_size
    ga = len(iterative._batches(n_forget, bs, gen))
    ft = len(iterative._batches(n_retain, bs, gen, 2))
    return p.baselines.epochs * (ga if method == "ga" else ga + ft)


def one_size(bench: Bench | None, p, info: dict, repeats: int,
             check_every: int | None = CHECK_EVERY) -> tuple[Bench, dict]:
    """Every method on the sets of ``p`` (one size, one concept), ``repeats`` times; the pool is
    built on the first call."""
    torch.manual_seed(p.seed)
    if bench is None:
        bench = Bench(p)
        bench.build_pool(p)
    b, d, u = bench.bundle, p.data, p.unlearn
    model, tok = b.model, b.tokenizer
    concept = read_concept(p.sets.out)
    kinds = scorer_kinds(standard_sets(d.celeba, d.characters, d.imagenet, d.unlearncanvas,
                                       p.eval.templates))
    fs, retain, rv = (load_split(p.sets.out, s, b.preprocess, tok) for s in SPLITS)
    bench.data = BaselineData(fs, retain)
    req = RP.request(bench.pool, bench.pool_data, ConceptMatcher(concept.name, concept.aliases))

    def scorer(cached: bool) -> TrialScorer:
        return TrialScorer(model, tok, kinds, concept, fs, rv, u.topk, cached)

    bench.restore()
    t = time.perf_counter()  # the gradient pass on its own (the first pass also warms up)
    g = gradient_pass(model, fs, retain, p.gradients.batch_size, None, p.gradients.max_forget)
    grad_s = time.perf_counter() - t
    runs = {m: [] for m in METHODS}
    for r in range(repeats):
        for m in METHODS:
            bench.restore()
            torch.manual_seed(p.seed)
            runs[m].append(_slug(bench, p, scorer) if m == "slug" else
                           _slug(bench, p, scorer, req) if m == "slug_pool" else
                           _baseline(bench, p, scorer, m, check_every))
            print(f"scaling: {info['size']} repeat {r + 1}/{repeats} {LABELS[m]}: "
                  f"{_fmt(runs[m][-1]['time_to_forget_s'])}", file=sys.stderr)
    bench.restore()
    n = len(fs.images)
    row = {**info, "concept": concept.label, "forget_search_pairs": n,
           "forget_gradient_pairs": g.n_forget, "retain_pairs": len(retain.images),
           "retain_val_pairs": len(rv.images),
           "data_sha256": split_hashes(p.sets.out, SPLITS), "methods": {}}
    for m, rs in runs.items():
        row["methods"][m] = summarise(rs)
        if m in BASELINES:
            row["methods"][m]["max_steps"] = _max_steps(p, m, n, len(retain.images))
    row["methods"]["slug"]["gradient_pass_s"] = round(grad_s, 3)
    row["methods"]["slug_pool"]["one_time_s"] = round(bench.pool_s, 3)
    return bench, row


def summarise(runs: list[dict]) -> dict:
    """Median time to forget when every repeat reached the criterion (else ``None``), whether
    (and in how many repeats) it was reached, the counts of the first repeat, every repeat."""
    reached = sum(r["reached"] for r in runs)
    ttf = [r["time_to_forget_s"] for r in runs]
    out = {"time_to_forget_s": round(statistics.median(ttf), 3) if reached == len(runs) else None,
           "reached": reached == len(runs), "reached_in": f"{reached}/{len(runs)}",
           "time_s": round(statistics.median(r["time_s"] for r in runs), 3),
           "time_to_forget_s_runs": [None if t is None else round(t, 3) for t in ttf]}
    keep = ("evaluations", "steps", "epochs", "lr", "layer", "rel_step", "search_forget",
            "search_retain", "retain_pairs", "pool_passes", "pool_batches")
    out.update({k: runs[0][k] for k in keep if k in runs[0]})
    if "search_s" in runs[0]:
        out["search_s"] = round(statistics.median(r["search_s"] for r in runs), 3)
        out["search_s_runs"] = [round(r["search_s"], 3) for r in runs]
    if len({json.dumps({k: r.get(k) for k in ("reached", "evaluations", "steps")})
            for r in runs}) > 1:
        out["repeats_differ"] = [{k: r.get(k) for k in ("reached", "evaluations", "steps")}
                                 for r in runs]
    return out


def ratio(row: dict, who: str = "slug") -> tuple[str | None, float | None]:
    """The fastest baseline to reach the criterion, and its time over ``who``'s (SLUG, or SLUG
    with the pooled retain gradient, per request)."""
    ms, s = row["methods"], row["methods"][who]["time_to_forget_s"]
    ok = [(ms[m]["time_to_forget_s"], m) for m in BASELINES if ms[m]["time_to_forget_s"]]
    if not ok:
        return None, None
    t, m = min(ok)
    return m, (t / s if s else None)


def _fmt(t: float | None) -> str:
    return "not reached" if t is None else f"{t:.2f}"


def _cell(m: dict) -> str:
    """Time to forget, or the time spent when the criterion was not reached."""
    t = m["time_to_forget_s"]
    return f"{t:.2f}" if t is not None else f"not reached ({m['time_s']:.1f})"


def table(results: dict, key: str = "size") -> str:
    """The results as a markdown table: one row per ``key`` (size or concept)."""
    head = [key, "forget-search pairs", *(f"{LABELS[m]} s" for m in METHODS),
            "fastest baseline / SLUG", "… / SLUG (pooled)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in results["sizes"]:
        (m, r), (_, rp) = ratio(row), ratio(row, "slug_pool")
        cells = [row[key].replace("x", "×") if key == "size" else row[key],
                 str(row["forget_search_pairs"]),
                 *(_cell(row["methods"][k]) for k in METHODS),
                 "-" if r is None else f"{r:.2f} ({LABELS[m]})",
                 "-" if rp is None else f"{rp:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    pool = results["sizes"][0]["methods"]["slug_pool"].get("one_time_s")
    return "\n".join(lines) + ("" if pool is None else
                               f"\n\nThe retain pool's one-time gradient pass: {pool:.2f} s.") + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for m in METHODS:
        pts = [(row["forget_search_pairs"], row["methods"][m]["time_to_forget_s"])
               for row in results["sizes"]]
        ok = [(x, y) for x, y in pts if y is not None]
        missed = [x for x, y in pts if y is None]
        label = LABELS[m] + (f" (not reached at {', '.join(map(str, missed))} pairs)"
                             if missed else "")
        if ok:
            ax.plot(*zip(*ok), marker="o", label=label)
        else:
            ax.plot([], [], marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel="forget-search pairs",
           ylabel="time to forget (s)",
           title=f"Time to forget vs forget-set size\n({CONCEPT}; tiny world, CPU, median of "
                 f"{results['repeats']})")
    xs = [row["forget_search_pairs"] for row in results["sizes"]]
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.minorticks_off()
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def provenance(p) -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"git_commit": git("rev-parse", "HEAD") or None,
            "git_dirty": git("status", "--porcelain", "--untracked-files=no").splitlines(),
            "seed": p.seed, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "model_sha256": sha256_file(ROOT / p.model.pretrained),
            "shards_sha256": sha256_tree(ROOT / p.data.shards)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="1 repeat at the smallest size only, written to a temporary folder")
    args = ap.parse_args(argv)
    sizes = dict(list(SIZES.items())[:1]) if args.quick else SIZES
    repeats = 1 if args.quick else REPEATS
    out, figure = OUT, FIGURE
    if args.quick:
        q = Path(tempfile.mkdtemp(prefix="scaling_quick_"))
        out, figure = q / "scaling.json", q / "scaling.png"
    t0, rows, bench, cwd = time.perf_counter(), [], None, os.getcwd()
    for size, max_matches in sizes.items():
        folder = Path(tempfile.mkdtemp(prefix="scaling_"))
        try:
            info = {"size": size, **build(folder, max_matches)}
            os.chdir(folder)
            p = params_mod.load()
            bench, row = one_size(bench, p, info, repeats)
            rows.append(row)
        finally:
            os.chdir(cwd)
            shutil.rmtree(folder, ignore_errors=True)
        print(json.dumps(rows[-1]), file=sys.stderr)
    p = params_mod.load(ROOT / "params.yaml")
    results = {
        "what": "time to forget (s) per method as the forget set grows; sizes from "
                "filter.max_matches, the rest params.yaml as committed",
        "concept": CONCEPT, "matches": MATCHES, "max_matches": sizes, "repeats": repeats,
        "quick": args.quick,
        "criterion": {"topk": p.unlearn.topk, "target": p.unlearn.target,
                      "split": "forget search / retain validation"},
        "stop_rule": {"check_every_steps": CHECK_EVERY,
                      "note": "baselines checked after every CHECK_EVERY optimizer steps "
                              "(IterativeConfig.check_every), not checks_per_epoch"},
        "baselines": {"lr": {m: getattr(p.baselines.lr, m) for m in BASELINES},
                      "epochs": p.baselines.epochs, "batch_size": p.baselines.batch_size},
        "slug_timing": "slug.unlearn end to end, TrialScorer(cached=True) built inside the timed "
                       "region; gradient_pass_s timed once per size on its own (the first pass "
                       "at that size, also a warm-up); search_s = Slug.time_s",
        "time_to_forget_s": "median over repeats when every repeat reached the criterion, else "
                            "null; every repeat in time_to_forget_s_runs",
        **provenance(p), "sizes": rows,
        "fastest_baseline_over_slug": {row["size"]: ratio(row)[1] for row in rows},
        "fastest_baseline_over_slug_pool": {row["size"]: ratio(row, "slug_pool")[1]
                                            for row in rows},
        "bench_s": round(time.perf_counter() - t0, 1)}
    write_json(out, results)
    plot(results, figure)
    print(table(results))
    print(f"wrote {out} and {figure} in {results['bench_s']:.0f} s")
    return results


if __name__ == "__main__":
    main()
