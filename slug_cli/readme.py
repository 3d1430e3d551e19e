"""The result tables of README.md and docs/results.md, written from the metrics files so that a
number is never typed by hand (``tests/test_readme.py`` fails when they disagree).

    python -m slug_cli.readme          # rewrite the tables between <!-- table:NAME --> markers
    python -m slug_cli.readme --check  # exit 1 if a table is out of date
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ITERATIVE = ("ft", "ga", "gaft", "salun_ref")  # the baselines that train for epochs
MARK = re.compile(r"(<!-- table:(\w+) -->\n)(.*?)(<!-- /table -->)", re.S)


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _load(root: Path, name: str) -> dict:
    return json.loads((root / "metrics" / f"{name}.json").read_text())


def _md(header: list[str], rows: list[list]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def pretrain(root: Path) -> str:
    z = _load(root, "pretrain")["zeroshot"]
    return _md(["kind", "top-1", "top-5"], [[k, _pct(v["top1"]), _pct(v["top5"])]
                                             for k, v in z.items()])


def slug(root: Path) -> str:
    e, u = _load(root, "evaluate"), _load(root, "unlearn")
    b, a = e["before"], e["after"]
    naive = e.get("naive_max_importance") or {}
    rows = [[label, _pct(b[key][sub]), _pct(a[key][sub]),
             _pct(naive.get("after", {}).get(key, {}).get(sub))]
            for label, key, sub in (("forget top-1, concept's images", "forget", "top1"),
                                    ("forget top-5, concept's images", "forget", "top5"),
                                    ("forget top-1, forget test split", "forget_split", "top1"),
                                    ("forget top-5, forget test split", "forget_split", "top5"),
                                    ("CelebA retain top-1 (target excluded)", "celeba", "top1"),
                                    ("ImageNet top-1", "imagenet", "top1"),
                                    ("MIA accuracy", "mia", "mean"))]
    rows.append(["MIA-efficacy (forget pairs judged unseen)", _pct(b.get("mia_efficacy")),
                 _pct(a.get("mia_efficacy")), _pct(naive.get("after", {}).get("mia_efficacy"))])
    rows.append(["layer (step / ‖θ‖)", "", f"`{u['layer']}` ({u['rel_step']:.3f})",
                 f"`{naive.get('layer', '–')}`"])
    return _md(["held-out metric (%)", "before", "SLUG", "naive layer"], rows)


def _w1(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def compare(root: Path) -> str:
    rows = []
    for m, r in _load(root, "compare")["methods"].items():
        t = r.get("time_to_forget_s")
        if m == "oracle":
            t = "–" if r.get("time_s") is None else f"retrain {r['time_s'] / 60:.1f} min"
        else:
            t = "–" if m == "original" else ("never" if t is None else f"{t:.1f} s")
            if r.get("one_time_s") is not None:  # SLUG (pooled retain): per request + once
                t += f" + {r['one_time_s']:.1f} s once"
        rows.append([r["label"], _pct(r["forget_top1"]), _pct(r["forget_top5"]),
                     _pct(r["celeba_top1"]), _pct(r["imagenet_top1"]),
                     _pct(r.get("mia_efficacy")), _w1(r.get("cosine_w1")), t,
                     "" if m in ("original", "oracle") else f"{r['storage_mb']:.2f} MB"])
    return _md(["method", "forget top-1", "forget top-5", "CelebA", "ImageNet", "MIA-eff.",
                "W1 to oracle", "time to forget", "stored"], rows)


def _bench(root: Path, name: str) -> dict:
    return json.loads((root / "bench" / f"{name}.json").read_text())


def protocol(root: Path) -> str:
    """The faithful protocol beside our variants (bench/protocol_variants.json)."""
    b = _bench(root, "protocol_variants")
    rows = []
    for v in b["variants"]:
        h = v.get("held_out") or {}
        rows.append([v["variant"], f"top-{v['topk']} ≤ {v['target']:g}", v["fronts"],
                     v["retain_batch"], f"`{v.get('layer', 'not reached')}`",
                     "–" if v.get("validation_retain") is None else
                     f"{100 * v['validation_retain']:.1f}",
                     _pct(h.get("forget_top1")), _pct(h.get("forget_top5")),
                     _pct(h.get("celeba_top1")), _pct(h.get("imagenet_top1"))])
    return _md(["protocol", "stop rule (search split)", "fronts", "retain batch", "layer",
                "validation retain", "forget top-1", "forget top-5", "CelebA", "ImageNet"], rows)


def verdict(root: Path) -> str:
    """Where SLUG keeps more utility than each baseline that forgets, and where not
    (compare.json; utility = CelebA and ImageNet top-1, SLUG minus the baseline, in points)."""
    m = _load(root, "compare")["methods"]
    s = m["slug"]
    groups: dict[str, list[str]] = {"more": [], "less": [], "a mix": [], "no forgetting": []}
    for k in ("ft", "ga", "gaft", "salun_ref", "ssd"):
        if (r := m.get(k)) is None:
            continue
        if r["forget_top1"] > 0.05:
            groups["no forgetting"].append(f"{r['label']} (forget top-1 {_pct(r['forget_top1'])})")
            continue
        d = [100 * (s[x] - r[x]) for x in ("celeba_top1", "imagenet_top1")]
        word = "more" if min(d) > 0 else ("less" if max(d) < 0 else "a mix")
        groups[word].append(f"{r['label']} ({d[0]:+.1f} / {d[1]:+.1f})")
    parts = [f"{w} than {', '.join(v)}" for w, v in groups.items() if v and w != "no forgetting"]
    out = "At the same stop rule SLUG keeps " + "; ".join(parts) + " (CelebA / ImageNet points)."
    if groups["no forgetting"]:
        out += f" Not forgetting: {', '.join(groups['no forgetting'])}."
    missed = [m[k]["label"] for k in ITERATIVE if k in m and not m[k]["reached"]]
    if missed:
        out += (f" {', '.join(missed)} did not meet the search-split stop rule within "
                f"{max(m[k]['epochs'] or 0 for k in ITERATIVE if k in m):g} epochs.")
    if (o := m.get("oracle")) is not None:
        out += (f" SLUG is {100 * (o['celeba_top1'] - s['celeba_top1']):.1f} CelebA and "
                f"{100 * (o['imagenet_top1'] - s['imagenet_top1']):.1f} ImageNet points below the "
                f"retrain oracle.")
    return out


def reliability_line(root: Path) -> str:
    rel = _load(root, "rank")["reliability"]
    curve = _bench(root, "alignment_reliability")["curve"]
    big = max((k for k in curve if k.endswith("_b16")), key=lambda k: int(k[1:].split("_")[0]))
    n = int(big[1:].split("_")[0])
    tw = curve[big]["towers"]
    return (f"Split-half Spearman ρ of the alignment, text / vision: "
            f"{rel['text']['alignment_spearman']:.2f} / {rel['vision']['alignment_spearman']:.2f} "
            f"on this run's retain split, {tw['text']['abs_alignment_spearman_mean']:.2f} / "
            f"{tw['vision']['abs_alignment_spearman_mean']:.2f} at {n:,} pairs (0.8 would be "
            f"usable); importance: {rel['text']['importance_spearman']:.2f} / "
            f"{rel['vision']['importance_spearman']:.2f}.")


def reliability(root: Path) -> str:
    """Split-half reliability of the ranking: this run's (metrics/rank.json) and the curve
    against the retain size (bench/alignment_reliability.json)."""
    rel = _load(root, "rank")["reliability"]
    curve = _bench(root, "alignment_reliability")["curve"]
    rows = [["this run's retain split", "", *(f"{rel[t]['alignment_spearman']:.2f}"
                                            for t in ("text", "vision")),
             *(f"{rel[t]['front_jaccard']:.2f}" for t in ("text", "vision")),
             *(f"{rel[t]['retain_half_cosine_median']:.2f}" for t in ("text", "vision")), ""]]
    for key in sorted(curve, key=lambda k: (int(k.split("_b")[1]), int(k[1:].split("_")[0]))):
        c, (n, bs) = curve[key], key[1:].split("_b")
        tw = c["towers"]
        rows.append([f"{int(n):,} pairs", bs,
                     *(f"{tw[t]['abs_alignment_spearman_mean']:.2f}" for t in ("text", "vision")),
                     *(f"{tw[t]['front1_jaccard_mean']:.2f}" for t in ("text", "vision")),
                     *(f"{tw[t]['retain_half_cosine_median_mean']:.2f}"
                       for t in ("text", "vision")), f"{c['time_s']:.0f} s"])
    return _md(["retain set", "batch", "alignment ρ text", "vision", "front Jaccard text",
                "vision", "retain half-cos text", "vision", "retain pass"], rows)


def eval_memory(root: Path) -> str:
    b = _bench(root, "eval_memory")
    runs = {(r["mode"], r["images"]): r for r in b["runs"]}
    lo, hi = b["counts"]
    s = [runs[("stream", n)]["peak_rss_mb"] for n in (lo, hi)]
    t = [runs[("stacked", n)]["peak_rss_mb"] for n in (lo, hi)] if ("stacked", hi) in runs else None
    return (f"Evaluation streams its images (`python -m bench.eval_memory`): peak memory "
            f"{s[0]:.0f} MB for {lo:,} CelebA-like images, {s[1]:.0f} MB for {hi:,} "
            f"(×{s[1] / s[0]:.2f})" + (f"; stacking them, as before, grew ×{t[1] / t[0]:.2f} "
                                       f"({t[0]:.0f} → {t[1]:.0f} MB) at {b['image_px']} px"
                                       if t else "") + ".")


def gradient_overhead(root: Path) -> str:
    b = _bench(root, "gradient_overhead")
    d = b["max_abs_grad_diff"]
    same = "bit-identical gradients" if d == 0 else f"the same gradients to {d:.0e}"
    return (f"The gradient pass costs {100 * b['overhead']:.1f} % more than open_clip's plain "
            f"forward and backward on the same batches (`python -m bench.gradient_overhead`: "
            f"{b['arch']}, batch {b['batch_size']}, {b['forget']} + {b['retain']} pairs, "
            f"{b['ours_s']:.1f} s against {b['plain_s']:.1f} s, median of {b['repeats']}, "
            f"{b['threads']} CPU threads; {same}).")


def sd(root: Path) -> str:
    s, u = _load(root, "sd_evaluate"), _load(root, "sd_unlearn")
    return _md(["concept", "chosen text layer (step / ‖θ‖)", "target's generations judged as it",
                "retained concepts"],
               [[s["concept"], f"`{u['layer']}` ({u['rel_step']:.3f})",
                 f"{_pct(s['before']['forget'])} → {_pct(s['after']['forget'])} %",
                 f"{_pct(s['before']['retained'])} → {_pct(s['after']['retained'])} %"]])


def vlm(root: Path) -> str:
    """The VLM row: the layer, the target named and the retained concepts named right."""
    e, u = _load(root, "vlm_evaluate"), _load(root, "vlm_unlearn")
    if e.get("skipped"):
        return f"Skipped: {e['skipped']}."
    b, a = e["before"], e["after"]
    kinds = " / ".join(f"{_pct(b['retained_per_kind'][k])} → {_pct(a['retained_per_kind'][k])}"
                       for k in b["retained_per_kind"])
    n = e["images"]
    return _md(["concept", "chosen vision layer (step / ‖θ‖)", "target named",
                "retained named (mean)", "per kind: " + " / ".join(b["retained_per_kind"])],
               [[e["concept"], f"`{u['layer']}` ({u['rel_step']:.3f})"
                 + ("" if u["search"]["reached"] else ", search missed"),
                 f"{_pct(b['target'])} → {_pct(a['target'])} %",
                 f"{_pct(b['retained'])} → {_pct(a['retained'])} %", kinds]]) + \
        f"\n\nHeld-out images: {n[e['concept']]} of {e['concept']}, " \
        f"{min(v for k, v in n.items() if k != e['concept'])}+ of each of " \
        f"{len(n) - 1} retained concepts."


def vlm_answers(root: Path) -> str:
    """What the VLM says about the target's held-out images, before and after."""
    e = _load(root, "vlm_evaluate")
    if e.get("skipped"):
        return f"Skipped: {e['skipped']}."
    t = e["target_answers"]
    rows = [[i + 1, *(f"{w[i][0] or '(nothing)'} ({w[i][1]})" if i < len(w) else ""
                      for w in (t["before"], t["after"]))]
            for i in range(max(len(t["before"]), len(t["after"])))]
    return _md(["rank", "answer before (images)", "answer after (images)"], rows)


def _multi_runs(root: Path) -> tuple[dict, list[str], list[str]]:
    runs = _load(root, "multi")["runs"]
    by = {(r["run"], r["strategy"]): r for r in runs}
    order = sorted({r["run"] for r in runs},
                   key=lambda x: (x == "three", 0 if x == "three" else int(x[1:])))
    return by, sorted({r["strategy"] for r in runs}), order


def _forgotten(r: dict) -> str:
    return "2 identities + Iron Man" if r["run"] == "three" else \
        f"{r['concepts']} identit{'y' if r['concepts'] == 1 else 'ies'}"


def multi(root: Path) -> str:
    """Several concepts at once (benchmarks/multiconcept), the strategies side by side: the
    worst forgotten concept's held-out top-1, what is retained, the time."""
    by, strategies, order = _multi_runs(root)
    s = " / ".join(strategies)

    def both(run, f):
        return " / ".join(f(by[(run, x)]) if (run, x) in by else "–" for x in strategies)

    rows = []
    for run in order:
        first = by[(run, strategies[0])]
        rows.append([_forgotten(first), both(run, lambda r: f"{r['forget_top1_max']:.1f}"),
                     f"{first['celeba_before']:.1f} → " + both(run, lambda r: f"{r['celeba_after']:.1f}"),
                     f"{first['imagenet_before']:.1f} → "
                     + both(run, lambda r: f"{r['imagenet_after']:.1f}"),
                     both(run, lambda r: f"{r['unlearn_s']:.0f}")])
    return _md([f"forgotten at once (each cell: {s})", "worst forgotten, top-1",
                "CelebA retain", "ImageNet", "time, s"], rows)


def multi_full(root: Path) -> str:
    """Every run of the several-concepts benchmark, a row per strategy."""
    by, strategies, order = _multi_runs(root)
    rows = [[_forgotten(r), x, "yes" if r["reached"] else "no",
             f"{r['forget_top1_max']:.1f} / {r['forget_top5_max']:.1f}",
             f"{r['celeba_before']:.1f} → {r['celeba_after']:.1f}",
             f"{r['imagenet_before']:.1f} → {r['imagenet_after']:.1f}",
             "–" if r["characters_after"] is None else f"{r['characters_after']:.1f}",
             f"{r['unlearn_s']:.1f}", f"{r['evaluate_s']:.1f}"]
            for run in order for x in strategies if (r := by.get((run, x)))]
    return _md(["forgotten at once", "strategy", "reached", "worst forgotten top-1 / top-5",
                "CelebA retain", "ImageNet", "characters", "unlearning s", "evaluation s"],
               rows)


def multi_sd(root: Path) -> str:
    """Two concepts at once on the diffusion pipeline's text encoder, per strategy: the share of
    each one's generations judged as it, and of the retained concepts', before → after."""
    runs = _load(root, "multi")["sd"]
    rows = [[r["strategy"] + ("" if r["reached"] else " (missed)"),
             *(f"{v['before']:.0f} → {v['after']:.0f}" for v in r["forgotten"].values()),
             f"{r['retained_before']:.1f} → {r['retained_after']:.1f}", f"{r['unlearn_s']:.0f}"]
            for r in runs]
    return _md(["strategy", *runs[0]["forgotten"], "retained concepts", "unlearning s"], rows)


def _canvas(root: Path) -> dict:
    import yaml

    table = yaml.safe_load((root / "params.yaml").read_text())["canvas"]["table"]
    return json.loads((root / table).read_text())


def _uic(k: dict) -> str:
    return f"{k['UA']:.1f} / {k['IRA']:.1f} / {k['CRA']:.1f}"


def unlearncanvas(root: Path) -> str:
    """Per method: styles and objects (UA / IRA / CRA), the mean of the six, the per-target goal;
    the published rows beside (different world, same protocol)."""
    t = _canvas(root)
    methods, pub = t["methods"], t["published"]
    first = next(iter(methods.values()))
    ref = lambda k: f"{k['UA_before']:.1f} / {k['IRA_ceiling']:.1f} / {k['CRA_ceiling']:.1f}"  # noqa: E731
    rows = [["unedited generator (ceilings)", ref(first["style"]), ref(first["object"]), "", ""]]
    rows += [[f"`{n}`", _uic(m["style"]), _uic(m["object"]), f"{m['mean_of_six']:.1f}",
              f"{m['goal']['met']} / {m['goal']['of']}"] for n, m in methods.items()]
    rows.append(["SLUG, published (SD 1.5)", _uic(pub["slug"]["style"]),
                 _uic(pub["slug"]["object"]), f"{pub['mean_of_six']['SLUG']:.1f}", ""])
    rows.append(["others, published", "", "", ", ".join(
        f"{k} {v:.1f}" for k, v in pub["mean_of_six"].items() if k != "SLUG"), ""])
    return _md(["method (evaluation seeds)", "styles UA / IRA / CRA",
                "objects UA / IRA / CRA", "mean of six", "goal met"], rows)


def unlearncanvas_full(root: Path) -> str:
    """Per method and kind: the averages, IRA / CRA on the half of the other concepts a
    projection saw and on the half it did not, and the costs."""
    t = _canvas(root)
    rows, notes = [], []
    for name, m in t["methods"].items():
        for kind in ("style", "object"):
            k, h = m[kind], m[kind]["halves"]
            half = lambda x, g: f"{h[g][x]:.1f} ({h[g][x + '_ceiling']:.1f})"  # noqa: E731
            rows.append([f"`{name}`, {kind}s", f"{k['UA']:.1f} ({k['UA_chance_max']:.1f})",
                         f"{k['IRA']:.1f} ({k['IRA_ceiling']:.1f})",
                         f"{k['CRA']:.1f} ({k['CRA_ceiling']:.1f})", half("IRA", "seen"),
                         half("IRA", "unseen"), half("CRA", "seen"), half("CRA", "unseen")])
        r = m["search_reached"]
        notes.append(f"`{name}`: goal met on {m['goal']['met']} of {m['goal']['of']}, search "
                     f"threshold reached on {r['targets']} of {r['of']}"
                     f"{' (not: ' + ', '.join(r['not_reached']) + ')' if r['not_reached'] else ''};"
                     f" unlearning {m['time_s']:.1f} s per target (at most {m['time_s_max']:.1f}),"
                     f" {m['peak_memory_mb']:.0f} MB peak, {m['storage_mb']:.2f} MB stored")
    return (_md(["method, kind", "UA (1 − 1/K)", "IRA (ceiling)", "CRA (ceiling)",
                 "IRA seen half", "IRA unseen half", "CRA seen half", "CRA unseen half"], rows)
            + "\n\n" + ".\n".join(notes) + ".")


def evaluate_full(root: Path) -> str:
    e = _load(root, "evaluate")
    b, a = e["before"], e["after"]
    rows = []
    for key in b:
        for sub, v in b[key].items() if isinstance(b[key], dict) else [("", b[key])]:
            if key == "mia" and sub == "std":
                continue
            w = a[key][sub] if sub else a[key]
            if key == "forget_cosine":
                rows.append([key, f"{v:.3f}", f"{w:.3f}", f"{w - v:+.3f}"])
            else:
                rows.append([f"{key} {sub}", _pct(v), _pct(w), f"{100 * (w - v):+.1f}"])
    return _md(["held-out metric (%)", "before", "after", "change"], rows)


def compare_full(root: Path) -> str:
    c = _load(root, "compare")
    rows = []
    for m, r in c["methods"].items():
        if m in ("original", "oracle"):  # no run to report: see the compare table
            continue
        t, ep = r.get("time_to_forget_s"), r.get("epochs")
        rows.append([r["label"], _pct(r["forget_split_top1"]), _pct(r["mia"]),
                     "yes" if r["reached"] else "no", "–" if t is None else f"{t:.1f} s",
                     f"{r['time_s']:.1f} s", f"{r['peak_mem_mb']:.0f} MB",
                     f"{_pct(r['changed_share'])} %", "–" if ep is None else f"{ep:.2f}"])
    tr = c["time_ratio"]
    fast, slug_ = c["methods"].get(tr["fastest_iterative"]), c["methods"]["slug"]
    return (_md(["method", "forget split top-1", "MIA", "reached", "time to forget", "total time",
                 "peak memory", "entries changed", "epochs"], rows)
            + (f"\n\nThe fastest iterative baseline ({fast['label']}) took "
               f"{tr['iterative_over_slug']:.2f}x SLUG's time to forget, keeping CelebA "
               f"{_pct(fast['celeba_top1'])} / ImageNet {_pct(fast['imagenet_top1'])} against "
               f"SLUG's {_pct(slug_['celeba_top1'])} / {_pct(slug_['imagenet_top1'])}."
               + (f" With the pooled retain gradient: {tr['iterative_over_slug_pool']:.2f}x "
                  f"per request ({pool['time_to_forget_s']:.1f} s; the pool's one-time "
                  f"{pool['one_time_s']:.1f} s not counted; {pool['pool_batches_recomputed']} "
                  f"of {pool['pool_batches']} batches recomputed)."
                  if (pool := c["methods"].get("slug_pool")) and tr.get("iterative_over_slug_pool")
                  else "")
               if tr["fastest_iterative"] else "\n\nNo iterative baseline met the stop rule, so "
               "there is no time-to-forget ratio."))


def timings(root: Path) -> str:
    pre, sdt = _load(root, "pretrain")["time_s"], _load(root, "sd_train")
    return _md(["stage", "recorded time"], [
        ["pretrain", f"{pre['load']:.0f} s reading + {pre['train']:.0f} s training"],
        ["sd_train", f"{sdt['load_s']:.0f} s reading + {sdt['vae']['time_s']:.0f} s VAE + "
                     f"{sdt['unet']['time_s']:.0f} s UNet"],
        ["unlearn (the step search)", f"{_load(root, 'unlearn')['time_s']:.1f} s, "
                                      f"{_load(root, 'unlearn')['evaluations']} evaluations"],
        ["evaluate", f"{_load(root, 'evaluate')['time_s']:.1f} s"],
        ["sd_unlearn (search)", f"{_load(root, 'sd_unlearn')['time_s']:.1f} s"],
        ["sd_evaluate (generation)", f"{_load(root, 'sd_evaluate')['generation_s']:.1f} s"],
        ["canvas_generator", f"{_load(root, 'canvas_generator')['time_s']:.0f} s"],
        ["canvas_base", f"{_load(root, 'canvas_base')['time_s']:.0f} s"]])


def lean_search(root: Path) -> str:
    """The lean step search against the exhaustive one (bench/lean_search.json)."""
    rows = []
    for c in _bench(root, "lean_search")["concepts"]:
        e, le = c["exhaustive"], c["lean"]
        rows.append([f"{c['concept']} ({c['kind']})",
                     f"{e['evaluations']} → {le['evaluations']}",
                     f"`{e['layer']}`" + ("" if le["layer"] == e["layer"]
                                          else f" → `{le['layer']}`"),
                     f"{e['search_retain']:.4f} → {le['search_retain']:.4f}",
                     " / ".join(f"{_pct(e[k])} → {_pct(le[k])}" for k in
                                ("forget_top5", "celeba_top1", "imagenet_top1")),
                     "yes" if c["same_layer_or_retain_within_0.005"]
                     and c["held_out_within_1_point"] else "**no**",
                     f"{le['monotone_layers']} of {c['layers']}"])
    return _md(["concept", "evaluations", "layer", "search retain",
                "held-out forget top-5 / CelebA / ImageNet", "within bar", "layers monotone "
                "(lean)"], rows)


def scaling_projection(root: Path) -> str:
    """SLUG's and GA's time to forget projected to real scale (bench/scaling_projection.json)."""
    b = _bench(root, "scaling_projection")
    c, n, k = b["costs_s_per_pair"], b["counts"], b["tiny_world_check"]
    rows = [[r["arch"], f"{r['n_forget_search']:,}", f"{r['slug_s']:.0f} s", f"{r['ga_s']:.0f} s",
             f"{r['ga_over_slug']:.2f}"] for r in b["rows"]]
    costs = "; ".join(f"{a} {1e3 * v['f']:.1f} / {1e3 * v['fb']:.1f} ms" for a, v in c.items())
    return (_md(["model", "forget-search pairs", "SLUG (projected)", "GA (projected)",
                 "GA / SLUG"], rows)
            + f"\n\nInputs: per-pair forward / forward+backward cost, batch {b['batch_size']}, "
            f"{b['threads']} CPU threads: {costs}. Counts from the tiny-world run: "
            f"{n['E']} SLUG evaluations, a trial costing {n['share']:.2f} of a full forward "
            f"pass over the search data, retain {n['R']} + validation {n['V']} pairs; GA "
            f"{n['ga_epochs']:.2f} epochs and {n['ga_checks']:.0f} checks to forget. The same "
            f"model on the tiny CLIP projects SLUG {k['projected']['slug_s']:.1f} s and GA "
            f"{k['projected']['ga_s']:.1f} s against the measured {k['measured']['slug_s']:.1f} s "
            f"and {k['measured']['ga_s']:.1f} s.")


def smoke(root: Path) -> str:
    """The real-architecture smoke run (bench/vit_b32_smoke.json, `python -m bench.vit_b32_smoke`)."""
    b = json.loads((root / "bench" / "vit_b32_smoke.json").read_text())
    m = b["machine"]
    return (f"Smoke run on a real architecture (`python -m bench.vit_b32_smoke`): ViT-B-32 with "
            f"random weights from a local file, `{' -> '.join(b['stages_run'])}` on a small tiny "
            f"world through its 224-px preprocessing, {len(b['tiny_stages_planned'])} tiny-world "
            f"stages: **{b['repro_s'] / 60:.1f} min** on {m['cpu_count']} CPU cores, "
            f"{b.get('conditions', 'on a quiet machine')} (`slug check --target evaluate`: "
            f"{b['slug_check_s']:.1f} s; the step search {b['unlearn_time_s']:.0f} s, "
            f"{b['evaluations']} trials).")


def scaling(root: Path) -> str:
    """Time to forget as the forget set grows (bench/scaling.json)."""
    from bench.scaling import table

    return table(_bench(root, "scaling")).rstrip("\n")


def time_to_forget(root: Path) -> str:
    """Time to forget on three concepts, median of 3 (bench/time_to_forget.json)."""
    from bench.scaling import table

    return table(_bench(root, "time_to_forget"), key="concept").rstrip("\n")


def linear_shortcut(root: Path) -> str:
    """One trial with and without the linear shortcut (bench/linear_shortcut.json)."""
    b = _bench(root, "linear_shortcut")
    rows = [[f"`{r['layer']}`", f"{1e3 * r['shortcut_s']:.1f}", f"{1e3 * r['cached_s']:.1f}",
             f"{r['speedup']:.2f}×", f"{r['max_diff']:.0e}"] for r in b["layers"]]
    return _md([f"{b['arch']} layer (random init; {b['images']} images, {b['captions']} captions)",
                "trial with (ms)", "without (ms)", "speed-up", "largest feature difference"],
               rows)


def canvas_halves(root: Path) -> str:
    """How far each method's patch moves the generator's text input, per prompt group
    (bench/canvas_halves.json)."""
    b = _bench(root, "canvas_halves")
    rows = [[f"`{k.split('/')[0]}`, {k.split('/')[1]}s", f"{v['target']:.3f}", f"{v['seen']:.3f}",
             f"{v['unseen']:.3f}", f"{v['unseen_over_seen']:.2f}×"]
            for k, v in b["summary"].items()]
    return _md(["method, kind", "target's prompts", "seen half", "unseen half", "unseen / seen"],
               rows)


def canvas_geometry(root: Path) -> str:
    """How well any step blind to the unseen half can single out the target, per linear map of
    the generator's text encoder (bench/canvas_geometry.json)."""
    b = _bench(root, "canvas_geometry")
    s = b["summary"]

    def cell(key: str) -> str:
        r = s.get(key, {}).get("ratio")
        return "–" if r is None else f"{r:.1f} (×{r ** -0.5:.2f})"

    sites = list(dict.fromkeys(k.split("/", 1)[1] for k in s if k.count(".")))
    names = {"q_proj": "attn.in_proj", "out_proj": "attn.out_proj", "fc1": "mlp.c_fc",
             "fc2": "mlp.c_proj"}  # as the patches name them
    rows = [[f"block {x.split('.')[0]} `{names[x.split('.')[1]]}`", cell(f"style/{x}"),
             cell(f"object/{x}")] for x in sites]
    rows += [["best map of each target", cell("style/best"), cell("object/best")],
             ["map the sweep's `nullspace` step chose", cell("style/chosen"),
              cell("object/chosen")]]
    return _md(["linear map (median over targets)", "styles: ratio (unseen moves ×)",
                "objects: ratio (unseen moves ×)"], rows)


TABLES = {"pretrain": pretrain, "smoke": smoke, "slug": slug, "compare": compare, "sd": sd,
          "unlearncanvas": unlearncanvas, "unlearncanvas_full": unlearncanvas_full,
          "evaluate_full": evaluate_full,
          "compare_full": compare_full, "timings": timings, "protocol": protocol,
          "reliability": reliability, "eval_memory": eval_memory,
          "gradient_overhead": gradient_overhead, "lean_search": lean_search,
          "scaling_projection": scaling_projection, "scaling": scaling,
          "time_to_forget": time_to_forget, "linear_shortcut": linear_shortcut, "canvas_halves": canvas_halves,
          "canvas_geometry": canvas_geometry,
          "verdict": verdict,
          "reliability_line": reliability_line, "vlm": vlm, "vlm_answers": vlm_answers,
          "multi": multi, "multi_full": multi_full,
          "multi_sd": multi_sd}
FILES = ("README.md", "docs/results.md", "docs/protocol.md", "docs/real-data.md")


def render(text: str, root: Path) -> str:
    return MARK.sub(lambda m: m.group(1) + TABLES[m.group(2)](root) + "\n" + m.group(4), text)


def main(argv: list[str]) -> None:
    root = Path.cwd()
    stale = []
    for name in FILES:
        path = root / name
        old = path.read_text()
        new = render(old, root)
        if new != old:
            stale.append(name)
            if "--check" not in argv:
                path.write_text(new)
    if "--check" in argv:
        print(f"{', '.join(stale)}: tables differ from metrics/*.json; run python -m "
              f"slug_cli.readme" if stale else "ok")
        sys.exit(1 if stale else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
