"""Benchmark: how reliable the alignment axis of SLUG's ranking is, against the retain set's size
and the retain batch size (split-half reliability, ``pipeline.unlearn.reliability``).

On a finished run (the tiny world by default): a random sample of shard pairs without the concept
(the forget index's keys are left out) is read once and shuffled; for each retain batch size the
retain gradient is computed chunk by chunk (128 pairs a chunk, batch-aligned, so any union of
chunks is exactly a plain pass over those pairs). The sizes are nested prefixes of the sample
(1,024 of 4,096 of 16,384): one pass serves every size. Each size is cut in 8 equal groups; every
balanced split of the groups into two halves (35) gives a split-half value, reported as the mean
over the splits (``*_mean``), its range, and the pipeline's own split (first half vs second half,
``*_pipeline``). The forget gradient (the forget-search split) is cut into 8 groups the same way,
so each half's alignment is ``cos(g_f,half, g_r,half)`` as in the gradients stage.

Reported per size and batch size: the Spearman correlation of |alignment| (and of signed
alignment, and of importance) between halves per tower, the Jaccard overlap of the halves' first
front (fronts=1) and first two fronts, the median retain/forget half cosine, the wall time of the
retain pass for that many pairs and the pass's peak extra memory (RSS). As a reference point free
of split-half assumptions: the Spearman between the size's full |alignment| and that of the rest
of the 16,384-pair sample (disjoint pairs, ``vs_rest``), and between the two batch sizes.
Finally the pipeline's own code (``reliability.split_pass``) on the run's retain split.

    python -m bench.alignment_reliability [--root RUN] [--threads 1]   # RUN: a repository after dvc repro
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import resource
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from pipeline.datasets.pairs import PairData, concat, load_pairs
from pipeline.datasets.shards import list_shards, read_metadata
from pipeline.models.factory import build
from pipeline.models.structure import tower
from pipeline.sets.build import load_split
from pipeline.unlearn import layers as L
from pipeline.unlearn import reliability as R
from pipeline.unlearn.gradients import mean_gradient

EXCLUDE = ["bias", "logit_scale", "position", "embedding", "ln_"]  # params.yaml gradients.exclude
CHUNK = 128  # pairs per retain chunk: a multiple of every batch size tried
GROUPS = 8  # groups per size; every balanced split of them into two halves is one split-half


class PeakRSS:
    """The peak resident memory of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self):
        self.proc, self.stop = psutil.Process(), threading.Event()
        self.base = self.peak = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def _part(d: PairData, idx) -> PairData:
    idx = torch.as_tensor(idx)
    return PairData(d.images[idx], d.tokens[idx], [d.captions[i] for i in idx.tolist()], d.report,
                    [d.keys[i] for i in idx.tolist()] if d.keys else [])


def read_pool(shards_dir: Path, forget_index: Path, n: int, seed: int, preprocess, tokenizer
              ) -> PairData:
    """``n`` random shard pairs whose keys are not in the forget index, in random order (each
    image decoded once)."""
    with open(forget_index) as f:
        concept = {(r["shard"], r["key"]) for r in csv.DictReader(f)}
    shards = list_shards(shards_dir)
    pool = [(s.name, str(k)) for s in shards for k in read_metadata(s, ("key",))["key"]
            if (s.name, str(k)) not in concept]
    rng = np.random.default_rng(seed)
    want = n + 256  # a margin for undecodable images
    picked = [pool[i] for i in rng.permutation(len(pool))[:want]]
    parts = []
    for s in shards:
        keys = {k for sn, k in picked if sn == s.name}
        if keys:
            parts.append(load_pairs([s], preprocess, tokenizer, only=keys))
    data = concat(*parts)
    if len(data.images) < n:
        raise SystemExit(f"only {len(data.images)} readable pairs, {n} wanted")
    return _part(data, rng.permutation(len(data.images))[:n])


def candidate_names(model) -> list[str]:
    return [k for k, p in model.named_parameters() if L.is_candidate(k, p, EXCLUDE)]


def chunk_grad(model, data: PairData, kind: str, batch_size: int, names) -> dict:
    g, _ = mean_gradient(model, data, kind, batch_size)
    return {k: g[k] for k in names}


def add_into(acc: dict | None, g: dict, w: float) -> dict:
    if acc is None:
        return {k: w * v for k, v in g.items()}
    for k, v in g.items():
        acc[k] += w * v
    return acc


def mean_of(groups: list[dict], which) -> dict:
    out = None
    for i in which:
        out = add_into(out, groups[i], 1.0 / len(which))
    return out


def balanced_splits(k: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every split of ``range(k)`` into two halves of k/2, each unordered pair once; the first is
    (first half, second half), the pipeline's split."""
    out = []
    for a in itertools.combinations(range(k), k // 2):
        if 0 in a:
            out.append((a, tuple(i for i in range(k) if i not in a)))
    return out


def half_rows(theta: dict, fa: dict, fb: dict, ra: dict, rb: dict) -> list[dict]:
    return [{"name": k, "tower": tower(k), **R.half_stats(theta[k], fa[k], fb[k], ra[k], rb[k])}
            for k in theta]


def full_alignment(theta: dict, gf: dict, gr: dict) -> dict[str, float]:
    return {k: L.layer_stats(theta[k], gf[k], gr[k])["abs_alignment"] for k in theta}


def by_tower(values: dict[str, float]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k in values:
        out.setdefault(tower(k), []).append(k)
    return out


def summarise(theta, f_groups, r_groups) -> dict:
    """Split-half statistics of one size, over every balanced split of its groups."""
    per: dict[str, dict[str, list]] = {}
    for a, b in balanced_splits(len(r_groups)):
        rows = half_rows(theta, mean_of(f_groups, a), mean_of(f_groups, b),
                         mean_of(r_groups, a), mean_of(r_groups, b))
        rel1 = R.reliability(rows, False, 1, [])
        rel2 = R.reliability(rows, False, 2, [])
        sig = R.reliability(rows, True, 1, [])
        for tw in rel1:
            d = per.setdefault(tw, {k: [] for k in (
                "abs_alignment_spearman", "signed_alignment_spearman", "importance_spearman",
                "front1_jaccard", "front2_jaccard", "retain_half_cosine_median",
                "forget_half_cosine_median")})
            d["abs_alignment_spearman"].append(rel1[tw]["alignment_spearman"])
            d["signed_alignment_spearman"].append(sig[tw]["alignment_spearman"])
            d["importance_spearman"].append(rel1[tw]["importance_spearman"])
            d["front1_jaccard"].append(rel1[tw]["front_jaccard"])
            d["front2_jaccard"].append(rel2[tw]["front_jaccard"])
            d["retain_half_cosine_median"].append(rel1[tw]["retain_half_cosine_median"])
            d["forget_half_cosine_median"].append(rel1[tw]["forget_half_cosine_median"])
    out = {}
    for tw, d in per.items():
        out[tw] = {}
        for k, v in d.items():
            v = [x for x in v if x is not None]
            out[tw][f"{k}_mean"] = round(statistics.fmean(v), 4) if v else None
            out[tw][f"{k}_pipeline"] = round(v[0], 4) if v else None
            if k.endswith("spearman") or k.endswith("jaccard"):
                out[tw][f"{k}_range"] = [round(min(v), 4), round(max(v), 4)] if v else None
        rho = out[tw]["abs_alignment_spearman_mean"]
        out[tw]["abs_alignment_spearman_brown"] = _r4(R.spearman_brown(rho))
    return out


def _r4(x):
    return None if x is None else round(float(x), 4)


def spearman_by_tower(x: dict[str, float], y: dict[str, float]) -> dict[str, float | None]:
    return {tw: _r4(R.spearman([x[k] for k in ks], [y[k] for k in ks]))
            for tw, ks in sorted(by_tower(x).items())}


def front_jaccard_by_tower(x: dict, y: dict, imp: dict, fronts: int) -> dict[str, float]:
    """Jaccard of the first ``fronts`` fronts ranked with alignment ``x`` vs ``y`` (importance
    ``imp`` for both): how many layers change front when only the retain side changes."""
    out = {}
    for tw, ks in sorted(by_tower(x).items()):
        rows = [{"name": k, "a": x[k], "b": y[k], "i": imp[k]} for k in ks]
        out[tw] = _r4(R.jaccard(R.front_set(rows, "a", "i", fronts),
                                R.front_set(rows, "b", "i", fronts)))
    return out


def current_split(b, root: Path, batch_sizes) -> dict:
    """The pipeline's own code on the run's retain split (``sets/retain.tar``)."""
    model = b.model
    forget = load_split(root / "data/sets", "forget_search", b.preprocess, b.tokenizer)
    retain = load_split(root / "data/sets", "retain", b.preprocess, b.tokenizer)
    out = {}
    for bs in batch_sizes:
        t = time.perf_counter()
        g = R.split_pass(model, forget, retain, bs)
        elapsed = time.perf_counter() - t
        rows = [r for r in R.stats_table(model, g, EXCLUDE) if r["candidate"]]
        for r in rows:
            r["tower"] = tower(r["name"])
        out[f"batch_{bs}"] = {"halves": g.describe(), "time_s": round(elapsed, 1),
                              "fronts_1": R.reliability(rows, False, 1, []),
                              "fronts_2": R.reliability(rows, False, 2, [])}
        del g
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("."),
                    help="a finished run's repository (its models/, data/)")
    ap.add_argument("--shards", type=Path, help="default: ROOT/data/tiny/laion")
    ap.add_argument("--model", type=Path, help="default: ROOT/models/tiny-clip.safetensors")
    ap.add_argument("--arch", default="tiny-clip")
    ap.add_argument("--forget", type=Path, help="default: ROOT/data/sets (forget_search.tar)")
    ap.add_argument("--forget-index", type=Path,
                    help="default: ROOT/data/filter/forget_index.csv (keys left out of the pool)")
    ap.add_argument("--sizes", default="1024,4096,16384")
    ap.add_argument("--batch-sizes", default="16,128")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: the machine is shared; 2 threads were 3x slower)")
    ap.add_argument("--out", type=Path, default=Path("bench/alignment_reliability.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    root = a.root
    sizes = sorted(int(x) for x in a.sizes.split(","))
    batch_sizes = [int(x) for x in a.batch_sizes.split(",")]
    for n in sizes:
        if n % (GROUPS * CHUNK):
            raise SystemExit(f"size {n}: must be a multiple of {GROUPS * CHUNK}")
    if any(CHUNK % bs for bs in batch_sizes):
        raise SystemExit(f"batch sizes must divide {CHUNK}")
    t0 = time.perf_counter()
    b = build(a.arch, str(a.model or root / "models/tiny-clip.safetensors"), False, "fp32", "cpu")
    model = b.model.eval()
    names = candidate_names(model)
    theta = {k: p.detach().clone() for k, p in model.named_parameters() if k in names}
    forget = load_split(a.forget or root / "data/sets", "forget_search", b.preprocess,
                        b.tokenizer)
    t = time.perf_counter()
    pool = read_pool(a.shards or root / "data/tiny/laion",
                     a.forget_index or root / "data/filter/forget_index.csv", sizes[-1], a.seed,
                     b.preprocess, b.tokenizer)
    read_s = time.perf_counter() - t
    print(f"read {len(pool.images)} retain pairs in {read_s:.0f}s", flush=True)

    # the forget gradient in GROUPS groups (a per-pair mean: batch-size independent)
    nf = len(forget.images)
    edges = [round(i * nf / GROUPS) for i in range(GROUPS + 1)]
    f_groups = [chunk_grad(model, _part(forget, range(s, e)), "forget", 128, names)
                for s, e in zip(edges, edges[1:])]
    f_full = {k: sum((e - s) / nf * g[k] for (s, e), g in zip(zip(edges, edges[1:]), f_groups))
              for k in names}

    results = {"setup": {"root": str(root), "arch": a.arch, "retain_pool_seed": a.seed,
                         "n_forget": nf, "candidate_layers": len(names), "groups": GROUPS,
                         "splits_per_size": len(balanced_splits(GROUPS)), "chunk": CHUNK,
                         "threads": a.threads, "read_retain_s": round(read_s, 1)},
               "curve": {}}
    full_align: dict[tuple[int, int], dict] = {}
    for bs in batch_sizes:
        groups = {n: [None] * GROUPS for n in sizes}  # running group sums per size
        times = {}
        with PeakRSS() as mem:
            t = time.perf_counter()
            for c in range(sizes[-1] // CHUNK):
                s = c * CHUNK
                g = chunk_grad(model, _part(pool, range(s, s + CHUNK)), "retain", bs, names)
                for n in sizes:
                    if s < n:
                        gi = s // (n // GROUPS)
                        groups[n][gi] = add_into(groups[n][gi], g, CHUNK / (n // GROUPS))
                del g
                if s + CHUNK in sizes:  # nested sizes: the time to reach n pairs
                    times[s + CHUNK] = time.perf_counter() - t
        pass_mb = mem.extra_mb
        rest = big = None
        for n in reversed(sizes):  # the largest first: its full gradient is the reference
            r_full = mean_of(groups[n], range(GROUPS))
            if n == sizes[-1]:
                big = r_full
            full_align[(n, bs)] = full_alignment(theta, f_full, r_full)
            entry = {"time_s": round(times[n], 1), "pass_peak_extra_mb": round(pass_mb, 1),
                     "towers": summarise(theta, f_groups, groups[n])}
            if n < sizes[-1]:
                # the other sizes[-1] - n pairs of the sample: disjoint, larger, the same batch
                rest = {k: (sizes[-1] * big[k] - n * r_full[k]) / (sizes[-1] - n) for k in big}
                ref = full_alignment(theta, f_full, rest)
                entry["full_vs_rest_spearman"] = spearman_by_tower(full_align[(n, bs)], ref)
                entry["full_vs_rest_front1_jaccard"] = front_jaccard_by_tower(
                    full_align[(n, bs)], ref, {k: float(f_full[k].norm() / theta[k].norm())
                                               for k in names}, 1)
            results["curve"][f"n{n}_b{bs}"] = entry
            print(f"n={n:6d} batch={bs:4d} {times[n]:6.1f}s  " + "; ".join(
                f"{tw}: |align| rho {v['abs_alignment_spearman_mean']} "
                f"(pipeline split {v['abs_alignment_spearman_pipeline']}), front1 J "
                f"{v['front1_jaccard_mean']}, retain half-cos {v['retain_half_cosine_median_mean']}"
                for tw, v in entry["towers"].items()), flush=True)
        del groups, big, rest
    imp = {k: float(f_full[k].norm() / theta[k].norm()) for k in names}
    if len(batch_sizes) == 2:
        b1, b2 = batch_sizes
        results["batch_size_effect"] = {
            f"n{n}": {"full_alignment_spearman": spearman_by_tower(full_align[(n, b1)],
                                                                  full_align[(n, b2)]),
                      "front1_jaccard": front_jaccard_by_tower(full_align[(n, b1)],
                                                               full_align[(n, b2)], imp, 1),
                      "front2_jaccard": front_jaccard_by_tower(full_align[(n, b1)],
                                                               full_align[(n, b2)], imp, 2)}
            for n in sizes}
    if (root / "data/sets/retain.tar").exists():
        results["current_split"] = current_split(b, root, batch_sizes)
    results["setup"]["total_s"] = round(time.perf_counter() - t0, 1)
    results["setup"]["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                           / 1024, 1)
    a.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {a.out} in {results['setup']['total_s']:.0f}s "
          f"(max RSS {results['setup']['max_rss_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
